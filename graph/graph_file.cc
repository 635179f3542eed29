// Graph file load/export over the generated GraphDef.
#include "graph/graph_file.h"

#include <fstream>
#include <map>
#include <sstream>

#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "graph/op_registry.h"
#include "proto/graph.pb.h"

namespace colossal::graph {
namespace {

namespace pb = google::protobuf;

class Collector : public pb::io::ErrorCollector {
 public:
  void AddError(int line, pb::io::ColumnNumber column, const std::string& message) override {
    if (first.empty()) first = absl::StrCat(line + 1, ":", column + 1, ": ", message);
  }
  void AddWarning(int, pb::io::ColumnNumber, const std::string&) override {}
  std::string first;
};

DType FromProto(v1::DType t) {
  switch (t) {
    case v1::I32: return DType::kI32;
    case v1::BF16: return DType::kBF16;
    case v1::F16: return DType::kF16;
    default: return DType::kF32;
  }
}

v1::DType ToProto(DType t) {
  switch (t) {
    case DType::kI32: return v1::I32;
    case DType::kBF16: return v1::BF16;
    case DType::kF16: return v1::F16;
    default: return v1::F32;
  }
}

struct Locator {
  const pb::TextFormat::ParseInfoTree* tree;
  const pb::Descriptor* desc;
  std::string source;
  std::string At(const char* field, int index) const {
    auto loc = tree->GetLocation(desc->FindFieldByName(field), index);
    if (loc.line < 0) return source;
    return absl::StrCat(source, ":", loc.line + 1, ":", loc.column + 1);
  }
};

absl::StatusOr<Shape> ResolveShape(const pb::RepeatedPtrField<std::string>& dims,
                                   const std::map<std::string, int64_t>& symbols,
                                   const std::string& where, const std::string& tensor) {
  Shape shape;
  for (const std::string& d : dims) {
    int64_t size = 0;
    if (absl::SimpleAtoi(d, &size)) {
      if (size < 1) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": tensor '", tensor, "': dimension ", d, " must be >= 1"));
      }
      shape.push_back(size);
      continue;
    }
    auto it = symbols.find(d);
    if (it == symbols.end()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": tensor '", tensor,
                                                     "': unknown dimension '", d,
                                                     "' (use a number, \"batch\" or a dims key)"));
    }
    shape.push_back(it->second);
  }
  return shape;
}

}  // namespace

absl::StatusOr<Graph> ParseGraphText(const std::string& text, const std::string& source,
                                     int64_t batch) {
  v1::GraphDef def;
  pb::TextFormat::Parser parser;
  Collector errors;
  pb::TextFormat::ParseInfoTree tree;
  parser.RecordErrorsTo(&errors);
  parser.WriteLocationsTo(&tree);
  if (!parser.ParseFromString(text, &def)) {
    return absl::InvalidArgumentError(absl::StrCat(source, ":", errors.first));
  }
  Locator loc{&tree, v1::GraphDef::descriptor(), source};

  Graph g;
  std::map<std::string, int64_t> symbols(def.dims().begin(), def.dims().end());
  for (const auto& [k, v] : symbols) {
    if (v < 1) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": dims '", k, "' must be >= 1"));
    }
    g.dims()[k] = v;
  }
  symbols["batch"] = batch;
  g.dims()["batch"] = batch;

  for (int i = 0; i < def.inputs_size(); ++i) {
    const v1::TensorDef& t = def.inputs(i);
    const std::string where = loc.At("inputs", i);
    if (t.name().empty() || g.Find(t.name()) >= 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": input needs a new, non-empty name"));
    }
    auto shape = ResolveShape(t.shape(), symbols, where, t.name());
    if (!shape.ok()) return shape.status();
    g.AddInput(t.name(), *shape, FromProto(t.dtype()));
  }
  for (int i = 0; i < def.params_size(); ++i) {
    const v1::TensorDef& t = def.params(i);
    const std::string where = loc.At("params", i);
    if (t.name().empty() || g.Find(t.name()) >= 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": parameter needs a new, non-empty name"));
    }
    if (t.dtype() != v1::F32) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": parameter '", t.name(), "' must be F32"));
    }
    auto shape = ResolveShape(t.shape(), symbols, where, t.name());
    if (!shape.ok()) return shape.status();
    ParamInit init;
    if (t.init().kind_case() == v1::Init::kConstant) {
      init = {ParamInit::Kind::kConstant, t.init().constant()};
    } else if (t.init().kind_case() == v1::Init::kNormalStd) {
      init = {ParamInit::Kind::kNormal, t.init().normal_std()};
    }
    g.AddParam(t.name(), *shape, init);
  }
  for (int i = 0; i < def.nodes_size(); ++i) {
    const v1::NodeDef& n = def.nodes(i);
    const std::string where = absl::StrCat(loc.At("nodes", i), ": node ", i, " (", n.op(), ")");
    if (FindOp(n.op()) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": unknown op"));
    }
    std::vector<int> inputs;
    for (const std::string& name : n.inputs()) {
      int id = g.Find(name);
      if (id < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": input '", name, "' is not defined by an earlier node"));
      }
      inputs.push_back(id);
    }
    std::vector<std::string> outputs(n.outputs().begin(), n.outputs().end());
    for (const std::string& name : outputs) {
      if (name.empty() || g.Find(name) >= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": output '", name, "' must be a new, non-empty name"));
      }
    }
    Attrs attrs;
    for (const auto& [key, a] : n.attrs()) {
      switch (a.value_case()) {
        case v1::AttrValue::kI: attrs[key] = a.i(); break;
        case v1::AttrValue::kF: attrs[key] = a.f(); break;
        case v1::AttrValue::kS: attrs[key] = a.s(); break;
        case v1::AttrValue::kInts:
          attrs[key] = std::vector<int64_t>(a.ints().values().begin(), a.ints().values().end());
          break;
        default:
          return absl::InvalidArgumentError(absl::StrCat(where, ": attribute '", key, "' is empty"));
      }
    }
    g.SetLayer(n.has_layer() ? n.layer() : -1);
    auto out = Apply(g, n.op(), inputs, attrs, outputs);
    if (!out.ok()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", out.status().message()));
    if (out->size() != outputs.size()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": op has ", out->size(),
                                                     " outputs, ", outputs.size(), " named"));
    }
  }
  g.SetLayer(-1);
  if (def.loss().empty() || g.Find(def.loss()) < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": loss '", def.loss(), "' is not a value of the graph"));
  }
  g.SetLoss(g.Find(def.loss()));
  for (const std::string& name : def.outputs()) {
    int id = g.Find(name);
    if (id < 0) return absl::InvalidArgumentError(absl::StrCat(source, ": output '", name, "' is not a value"));
    g.MarkOutput(id);
  }
  return g;
}

absl::StatusOr<Graph> LoadGraphFile(const std::string& path, int64_t batch) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open graph file"));
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseGraphText(ss.str(), path, batch);
}

absl::StatusOr<std::string> ExportGraphText(const Graph& g, const std::string& name) {
  v1::GraphDef def;
  def.set_name(name);
  for (const auto& [k, v] : g.dims()) {
    if (k != "batch") (*def.mutable_dims())[k] = v;
  }
  for (int id : g.inputs()) {
    const Value& v = g.value(id);
    auto* t = def.add_inputs();
    t->set_name(v.name);
    t->set_dtype(ToProto(v.dtype));
    for (size_t d = 0; d < v.shape.size(); ++d) {
      t->add_shape(d == 0 ? "batch" : std::to_string(v.shape[d]));
    }
  }
  for (int id : g.params()) {
    const Value& v = g.value(id);
    auto* t = def.add_params();
    t->set_name(v.name);
    t->set_dtype(v1::F32);
    for (int64_t d : v.shape) t->add_shape(std::to_string(d));
    if (v.init.kind == ParamInit::Kind::kConstant) {
      t->mutable_init()->set_constant(v.init.value);
    } else {
      t->mutable_init()->set_normal_std(v.init.value);
    }
  }
  for (const Node& n : g.nodes()) {
    if (n.backward) return absl::FailedPreconditionError("cannot export a graph with backward nodes");
    auto* nd = def.add_nodes();
    nd->set_op(n.op);
    if (n.layer >= 0) nd->set_layer(n.layer);
    for (int v : n.inputs) nd->add_inputs(g.value(v).name);
    for (int v : n.outputs) nd->add_outputs(g.value(v).name);
    for (const auto& [key, a] : n.attrs) {
      v1::AttrValue& av = (*nd->mutable_attrs())[key];
      if (auto* i = std::get_if<int64_t>(&a)) av.set_i(*i);
      else if (auto* f = std::get_if<double>(&a)) av.set_f(*f);
      else if (auto* s = std::get_if<std::string>(&a)) av.set_s(*s);
      else for (int64_t x : std::get<std::vector<int64_t>>(a)) av.mutable_ints()->add_values(x);
    }
  }
  if (g.loss() >= 0) def.set_loss(g.value(g.loss()).name);
  for (int v : g.outputs()) {
    if (v != g.loss()) def.add_outputs(g.value(v).name);
  }
  std::string text;
  pb::TextFormat::Printer printer;
  if (!printer.PrintToString(def, &text)) return absl::InternalError("text format printing failed");
  return text;
}

}  // namespace colossal::graph
