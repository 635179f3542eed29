// `colossal-worker`: one rank, as node daemons start it (see runtime/worker/worker_main.h).
#include <string>
#include <vector>

#include "runtime/worker/worker_main.h"

int main(int argc, char** argv) {
  return colossal::worker::WorkerMain(std::vector<std::string>(argv + 1, argv + argc));
}
