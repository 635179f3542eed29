// Activation checkpointing (recompute) as a graph transform over a graph with its
// backward (autodiff.h): the forward of the chosen layers keeps only what crosses the
// layer's boundary (its inputs and the values later layers read); the backward runs each
// such layer's forward again, node by node right before the first backward node that
// needs the result, and reads the recomputed values instead of the first pass's.
//
// How: every forward node of a chosen layer whose outputs the backward reads (directly,
// or through other such nodes) gets a clone (Node::recompute_of, a backward node of the
// same op, attributes and layer) writing fresh values "<name>.recompute"; the clones read
// the clones of their in-layer inputs and the originals of everything else (the layer's
// inputs, parameters, graph inputs). Backward nodes then read the clones. The memory
// plan sees the first pass's internal values die inside the forward, so the arena holds
// one layer's internals at a time instead of every layer's. Values a later layer's forward
// reads, graph outputs and the loss are never recomputed. Communication nodes inside a
// chosen layer (tensor parallelism's all-reduces, sequence parallelism's gathers) run
// again in the clone, in the same order on every rank. DefaultSchedule (schedule.h)
// places each clone right before its first reader.
#pragma once

#include <vector>

#include "absl/status/status.h"
#include "graph/ir.h"

namespace colossal::graph {

// Which of the transformer layers `graph` holds (Node::layer 1..num_layers of a
// GPT-style marking: 0 before them, num_layers + 1 after; a pipeline chunk holds a run of
// them) to recompute: with `first` > 0 its first `first` of them (Megatron's "block"
// method, per stage), else every `every`-th layer of the model, layers 1, 1 + every,
// 1 + 2·every, ... (every = 1: all of them).
std::vector<int> RecomputeLayers(const Graph& graph, int num_layers, int every, int first = 0);

// Adds the recompute clones of `layers` to `graph` (which carries its backward) and
// rewires the backward to them. InvalidArgument when the graph has no backward, a layer
// is not one of the graph's, or the graph was transformed already.
absl::Status AddRecompute(Graph& graph, const std::vector<int>& layers);

}  // namespace colossal::graph
