// The loss scale's trajectory against PyTorch GradScaler's rules written out by hand:
// halve and skip on a non-finite norm (not below min), double after growth_interval
// finite steps in a row, the run restarting after an overflow; disabled, every step
// runs at scale 1; the state round-trips.
#include "runtime/worker/loss_scaler.h"

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

namespace colossal::worker {
namespace {

const double kInf = std::numeric_limits<double>::infinity();

TEST_CASE("the fp16 loss scale halves on overflow, skipping, and grows after clean runs") {
  LossScaler s(config::LossScaleSpec{1024, 3, 256}, /*enabled=*/true);
  CHECK(s.scale() == 1024);
  CHECK(!s.Update(kInf));
  CHECK(s.scale() == 512);
  CHECK(!s.Update(std::nan("")));
  CHECK(s.scale() == 256);
  CHECK(!s.Update(kInf));
  CHECK(s.scale() == 256);  // not below min
  CHECK(s.skipped_steps() == 3);
  CHECK(s.Update(1.0));
  CHECK(s.Update(2.0));
  CHECK(s.scale() == 256);
  CHECK(s.Update(3.0));  // the third clean step in a row
  CHECK(s.scale() == 512);
  CHECK(s.Update(1.0));
  CHECK(s.Update(1.0));
  CHECK(!s.Update(kInf));  // the run of clean steps restarts
  CHECK(s.scale() == 256);
  CHECK(s.Update(1.0));
  CHECK(s.Update(1.0));
  CHECK(s.scale() == 256);
  CHECK(s.skipped_steps() == 4);

  const LossScaler::State saved = s.state();
  LossScaler again(config::LossScaleSpec{1024, 3, 256}, true);
  again.Restore(saved);
  CHECK(again.scale() == 256);
  CHECK(again.skipped_steps() == 4);
  CHECK(again.Update(1.0));  // the restored run's third clean step
  CHECK(again.scale() == 512);
}

TEST_CASE("without fp16 the scale is 1 and every step runs") {
  LossScaler s(config::LossScaleSpec{}, /*enabled=*/false);
  CHECK(s.scale() == 1.0f);
  CHECK(s.Update(kInf));
  CHECK(s.scale() == 1.0f);
  CHECK(s.skipped_steps() == 0);
}

}  // namespace
}  // namespace colossal::worker
