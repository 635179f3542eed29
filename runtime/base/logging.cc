// spdlog set-up: one stderr sink, a pattern with a custom %* flag for the context.
#include "runtime/base/logging.h"

#include <memory>
#include <mutex>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include "runtime/base/env.h"

namespace colossal::base {
namespace {

std::mutex& ContextMutex() {
  static std::mutex mu;
  return mu;
}
std::string& ContextJob() {
  static std::string job;
  return job;
}
int g_rank = -1;
int64_t g_step = -1;

class ContextFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::string text;
    {
      std::lock_guard<std::mutex> lock(ContextMutex());
      if (!ContextJob().empty()) text += ContextJob();
      if (g_rank >= 0) text += (text.empty() ? "" : " ") + std::string("rank=") + std::to_string(g_rank);
      if (g_step >= 0) text += (text.empty() ? "" : " ") + std::string("step=") + std::to_string(g_step);
    }
    if (text.empty()) return;
    text = "[" + text + "] ";
    dest.append(text.data(), text.data() + text.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<ContextFlag>();
  }
};

}  // namespace

void InitLogging() {
  static std::once_flag once;
  std::call_once(once, [] {
    auto logger = std::make_shared<spdlog::logger>(
        "colossal", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<ContextFlag>('*').set_pattern("%Y-%m-%d %H:%M:%S.%e %L %*%v");
    logger->set_formatter(std::move(formatter));
    spdlog::set_default_logger(logger);
  });
  std::string level = GetEnv(kEnvLogLevel).value_or("info");
  spdlog::set_level(spdlog::level::from_str(level));
}

void SetLogContext(std::string_view job, int rank) {
  std::lock_guard<std::mutex> lock(ContextMutex());
  ContextJob() = std::string(job);
  g_rank = rank;
}

void SetLogStep(int64_t step) {
  std::lock_guard<std::mutex> lock(ContextMutex());
  g_step = step;
}

}  // namespace colossal::base
