#include "kernels/common/cuda_plugin.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace colossal::kernels {
namespace {

namespace fs = std::filesystem;

constexpr const char kPluginName[] = "libcolossal_cuda.so";

std::vector<std::string> PluginCandidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("COLOSSAL_CUDA_PLUGIN"); env != nullptr && env[0] != '\0') {
    out.push_back(env);
    return out;  // an explicit choice is the only one looked at
  }
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    out.push_back((exe.parent_path() / kPluginName).string());
    out.push_back((exe.parent_path().parent_path() / "lib" / kPluginName).string());
  }
  return out;
}

// Makes `soname` resolvable for the plugin: loaded globally from the linker's own search,
// else from the CUDA install folders. Returns an error line when nowhere has it.
std::string PreloadCudaLibrary(const std::string& soname) {
  if (dlopen(soname.c_str(), RTLD_NOW | RTLD_GLOBAL) != nullptr) return "";
  std::vector<std::string> dirs;
  if (const char* root = std::getenv("CUDA_PATH"); root != nullptr && root[0] != '\0') {
    dirs.push_back(std::string(root) + "/lib64");
    dirs.push_back(std::string(root) + "/lib");
  }
  dirs.push_back("/usr/local/cuda/lib64");
  for (const std::string& dir : dirs) {
    const std::string path = dir + "/" + soname;
    if (dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL) != nullptr) return "";
  }
  return absl::StrCat(soname, " is in none of: the dynamic linker's path, ", absl::StrJoin(dirs, ", "),
                      " (set CUDA_PATH to the CUDA install)");
}

absl::StatusOr<std::string> Load() {
  if (!CudaBackendBuilt()) {
    return absl::FailedPreconditionError("this build has no CUDA backend (it found no nvcc; see third_party/cuda)");
  }
  std::string plugin;
  std::vector<std::string> looked;
  for (const std::string& candidate : PluginCandidates()) {
    looked.push_back(candidate);
    if (access(candidate.c_str(), R_OK) == 0) {
      plugin = candidate;
      break;
    }
  }
  if (plugin.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the CUDA plugin ", kPluginName, " is not at ", absl::StrJoin(looked, " or "),
                     " (set COLOSSAL_CUDA_PLUGIN to its path)"));
  }
#ifdef COLOSSAL_CUDA_MAJOR
  for (const char* lib : {"libcudart.so.", "libcublasLt.so."}) {
    const std::string missing = PreloadCudaLibrary(absl::StrCat(lib, COLOSSAL_CUDA_MAJOR));
    if (!missing.empty()) return absl::FailedPreconditionError(absl::StrCat("CUDA plugin ", plugin, ": ", missing));
  }
#endif
  if (dlopen(plugin.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    const char* why = dlerror();
    return absl::FailedPreconditionError(absl::StrCat("cannot load the CUDA plugin ", plugin, ": ", why ? why : "?"));
  }
  return plugin;
}

}  // namespace

bool CudaBackendBuilt() {
#ifdef COLOSSAL_CUDA_MAJOR
  return true;
#else
  return false;
#endif
}

absl::StatusOr<std::string> LoadCudaPlugin() {
  static std::once_flag once;
  static absl::StatusOr<std::string>* result = nullptr;
  std::call_once(once, [] { result = new absl::StatusOr<std::string>(Load()); });
  return *result;
}

}  // namespace colossal::kernels
