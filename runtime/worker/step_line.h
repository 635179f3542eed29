// The line a rank prints after a step: on a terminal, one progress line rewritten in
// place (step, loss, val loss once known, lr, gradient norm, throughput, ETA); otherwise
// a log line.
#pragma once

#include <string>

#include "runtime/worker/trainer.h"

namespace colossal::worker {

// "1h02m", "3m05s", "42s".
std::string Duration(double seconds);

// `val_loss` < 0: none yet. Prints nothing unless `due` (log lines every log_every steps).
void PrintStepLine(const StepReport& r, double val_loss, double eta_seconds, bool terminal, bool due);

}  // namespace colossal::worker
