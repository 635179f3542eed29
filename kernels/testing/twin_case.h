// The kernel harness: one per-op case runs on every twin registered for a dispatch
// table (testing::Twins: ref, cpu and any device backend), each in its own backend's
// memory (kernels/common/backend_memory.h): the case's inputs are copied in, the twin
// runs on a Stream of that backend, its outputs are copied back and compared on the host
// with the tolerance its kernel header states against the double-precision reference
// the test computed. A CUDA twin is tested by registering it and its backend's memory:
// every case then runs it with no test edits; a backend whose memory is not registered
// (no device here) is listed as skipped, not failed.
//
// With COLOSSAL_TWIN_REPORT=FILE in the environment every compared output also appends a
// line to FILE: table, twin, dtype, case, output, max |error|, the worst error over its
// bound (<= 1 within tolerance) and ok (tools/gpu/check.sh sums them per kernel).
//
// Finite-difference mode: FiniteDifferenceCheck holds the double reference backward to
// central differences of the double reference forward.
#pragma once

#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <cstdio>
#include <cstdlib>

#include <catch2/catch.hpp>

#include "kernels/common/backend_memory.h"
#include "kernels/common/dispatch.h"
#include "kernels/common/tolerance.h"
#include "kernels/testing/kernel_testing.h"
#include "kernels/testing/twins.h"

namespace colossal::kernels::testing {

template <typename T>
std::vector<double> AsDouble(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

// Appends one line to $COLOSSAL_TWIN_REPORT when it is set (see the top of this file).
inline void ReportTwin(const std::string& table, Backend backend, DType dtype, const std::string& case_name,
                       const std::string& output, const CloseResult& r) {
  const char* path = std::getenv("COLOSSAL_TWIN_REPORT");
  if (path == nullptr || *path == '\0') return;
  if (std::FILE* f = std::fopen(path, "a")) {
    std::fprintf(f, "%s\t%s\t%s\t%s\t%s\t%.6g\t%.6g\t%d\n", table.c_str(), std::string(BackendName(backend)).c_str(),
                 std::string(DTypeName(dtype)).c_str(), case_name.c_str(), output.c_str(), r.max_abs_err, r.worst_ratio,
                 r.ok ? 1 : 0);
    std::fclose(f);
  }
}

class TwinCase {
 public:
  explicit TwinCase(std::string name) : name_(std::move(name)) {}

  // Arguments in any order; each returns its index into Run's `args`.
  int In(const std::vector<float>& host) { return Add(host.data(), host.size() * sizeof(float), {}); }
  int InI32(const std::vector<int32_t>& host) { return Add(host.data(), host.size() * sizeof(int32_t), {}); }
  int InU16(const std::vector<uint16_t>& host) { return Add(host.data(), host.size() * sizeof(uint16_t), {}); }
  // An output the twin writes, starting from `initial` (accumulate cases pre-fill it),
  // compared with `expected` within `tolerance`.
  int Out(std::string name, const std::vector<float>& initial, std::vector<double> expected,
          Tolerance tolerance) {
    Output out{std::move(name), std::move(expected), tolerance};
    return Add(initial.data(), initial.size() * sizeof(float), std::move(out));
  }
  // An fp64 output (the optimizers' global sums), compared in double; NaN to start with.
  int OutF64(std::string name, std::vector<double> expected, Tolerance tolerance) {
    const std::vector<double> initial(expected.size(), std::numeric_limits<double>::quiet_NaN());
    Output out{std::move(name), std::move(expected), tolerance, /*f64=*/true};
    return Add(initial.data(), initial.size() * sizeof(double), std::move(out));
  }

  // An output that must equal `expected` bit for bit (casts, 16-bit values).
  template <typename T>
  int OutExact(std::string name, const std::vector<T>& initial, const std::vector<T>& expected) {
    Output out{std::move(name), {}, {}};
    out.exact.resize(expected.size() * sizeof(T));
    if (!expected.empty()) std::memcpy(out.exact.data(), expected.data(), out.exact.size());
    out.exact_width = sizeof(T);
    return Add(initial.data(), initial.size() * sizeof(T), std::move(out));
  }

  // Runs `call(fn, stream, args)` for every twin of `table`, args[i] pointing at argument
  // i in that twin's memory. Returns one line per failure (case, twin, output, worst
  // element); empty when every twin is within its tolerance.
  template <typename Fn, typename Call>
  std::string Run(const Dispatch<Fn>& table, Call call, DType dtype = DType::kF32) {
    std::string failures;
    for (Backend backend : Twins(table, dtype)) {
      const BackendMemory* memory = FindBackendMemory(backend);
      if (memory == nullptr) {
        skipped_.push_back(backend);
        continue;
      }
      std::vector<void*> args;
      for (const Arg& a : args_) {
        void* p = memory->allocate(static_cast<int64_t>(a.bytes.size()));
        memory->to_backend(p, a.bytes.data(), static_cast<int64_t>(a.bytes.size()));
        args.push_back(p);
      }
      const Stream stream{backend, nullptr};
      call(table.Get(backend, dtype), stream, args);
      memory->synchronize(stream);
      for (size_t i = 0; i < args_.size(); ++i) {
        const Arg& a = args_[i];
        if (a.output.name.empty()) continue;
        CloseResult r;
        if (a.output.exact_width > 0) {
          std::vector<char> got(a.bytes.size());
          memory->to_host(got.data(), args[i], static_cast<int64_t>(a.bytes.size()));
          r.ok = got == a.output.exact;
          for (size_t e = 0; !r.ok && e < got.size(); e += a.output.exact_width) {
            if (std::memcmp(got.data() + e, a.output.exact.data() + e, a.output.exact_width) != 0) {
              r.message = "element " + std::to_string(e / a.output.exact_width) + " differs bitwise";
              break;
            }
          }
        } else if (a.output.f64) {
          std::vector<double> got(a.bytes.size() / sizeof(double));
          memory->to_host(got.data(), args[i], static_cast<int64_t>(a.bytes.size()));
          r = AllClose(got, a.output.expected, a.output.tolerance.atol, a.output.tolerance.rtol);
        } else {
          std::vector<float>& got = got_[{backend, static_cast<int>(i)}];
          got.resize(a.bytes.size() / sizeof(float));
          memory->to_host(got.data(), args[i], static_cast<int64_t>(a.bytes.size()));
          r = AllClose(got, a.output.expected, a.output.tolerance.atol, a.output.tolerance.rtol);
        }
        if (a.output.exact_width > 0) r.worst_ratio = r.ok ? 0 : INFINITY;
        ReportTwin(table.name(), backend, dtype, name_, a.output.name, r);
        if (!r.ok) {
          failures += name_ + ", twin " + std::string(BackendName(backend)) + " of " + table.name() + ", " +
                      a.output.name + ": " + r.message + "\n";
        }
      }
      for (void* p : args) memory->release(p);
      ran_.push_back(backend);
    }
    return failures;
  }

  const std::vector<Backend>& ran() const { return ran_; }
  const std::vector<Backend>& skipped() const { return skipped_; }
  // What twin `backend` left in fp32 output `index` (after Run), for properties beyond the
  // tolerance (exact zeros, sums, bit-identity between runs).
  const std::vector<float>& Got(Backend backend, int index) const { return got_.at({backend, index}); }

 private:
  struct Output {
    std::string name;  // empty: an input
    std::vector<double> expected;
    Tolerance tolerance;
    bool f64 = false;
    std::vector<char> exact;  // OutExact: the expected bytes
    size_t exact_width = 0;   // OutExact: bytes per element; 0 otherwise
  };
  struct Arg {
    std::vector<char> bytes;
    Output output;
  };
  int Add(const void* data, size_t bytes, Output output) {
    Arg a;
    a.bytes.resize(bytes);
    if (bytes > 0) std::memcpy(a.bytes.data(), data, bytes);
    a.output = std::move(output);
    args_.push_back(std::move(a));
    return static_cast<int>(args_.size()) - 1;
  }

  std::string name_;
  std::vector<Arg> args_;
  std::vector<Backend> ran_, skipped_;
  std::map<std::pair<Backend, int>, std::vector<float>> got_;
};

// Fails the test case with Run's failure lines when there are any.
inline void RequireNoFailures(const std::string& failures) {
  INFO(failures);
  REQUIRE(failures.empty());
}

template <typename T>
T* ArgAs(const std::vector<void*>& args, int i) {
  return static_cast<T*>(args[i]);
}

// Each input's analytic gradient (from the double reference backward, with the
// cotangent `loss` contracts against) against central differences of `loss`, the
// reference forward reduced to a scalar. h = 1e-6 on O(1) values: truncation ~h², rounding
// ~1e-10, hence the default tolerance. Returns one line per failure; empty when all agree.
inline std::string FiniteDifferenceCheck(const std::string& name,
                                         const std::vector<std::pair<std::string, std::vector<double>*>>& inputs,
                                         const std::function<double()>& loss,
                                         const std::vector<std::vector<double>>& analytic,
                                         Tolerance tolerance = {1e-8, 1e-6}) {
  std::string failures;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::vector<double> numeric = FiniteDifference(*inputs[i].second, loss);
    const CloseResult r = AllClose(analytic[i], numeric, tolerance.atol, tolerance.rtol);
    if (!r.ok) failures += name + ", d" + inputs[i].first + " vs finite differences: " + r.message + "\n";
  }
  return failures;
}

}  // namespace colossal::kernels::testing
