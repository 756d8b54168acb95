// The builder's passes one by one on small graphs, and the whole engine against the INT8
// reference backend on them (every pattern, int8 and fp16, fused and in place).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "engine_test_graphs.h"
#include "qyolo/engine_builder.h"
#include "qyolo/int8.h"

namespace qyolo {
namespace {

using testing::GraphMaker;
using testing::yolo_like;

int64_t differences(const Tensor& a, const Tensor& b) {
  if (a.numel() != b.numel()) return -1;
  int64_t n = 0;
  for (int64_t i = 0; i < a.numel(); ++i)
    n += std::memcmp(a.data<float>() + i, b.data<float>() + i, 4) != 0;
  return n;
}

// The engine and Int8Executor on the same graph, scales and image: outputs bit for bit.
void expect_equal_to_reference(const Graph& graph, const BuildOptions& options) {
  auto built = build_engine(graph, options);
  ASSERT_TRUE(built) << built.status().message();
  Int8Options ref;
  ref.scales = options.scales;
  ref.fp16_layers = options.fp16_layers;
  auto reference = Int8Executor::create(graph, ref);
  ASSERT_TRUE(reference) << reference.status().message();
  const Tensor image = testing::random_image();
  auto want = (*reference)->run({{"images", image}});
  ASSERT_TRUE(want) << want.status().message();
  auto got = testing::run_cpu_engine(built->engine, image);
  ASSERT_TRUE(got) << got.status().message();
  for (const auto& [name, t] : *want) {
    ASSERT_TRUE(got->count(name)) << name;
    EXPECT_EQ(differences(got->at(name), t), 0) << name;
  }
}

// Copy and Requantize layers: the Concat inputs no producer wrote into their slice.
int copy_layers(const Engine& e) {
  return int(std::count_if(e.layers.begin(), e.layers.end(), [](const EngineLayer& l) {
    return l.op == "Copy" || l.op == "Requantize";
  }));
}

const PassReport* find_pass(const BuildResult& r, const std::string& name) {
  for (const PassReport& p : r.passes)
    if (p.pass == name) return &p;
  return nullptr;
}

TEST(EngineBuild, EveryPassReportsWhatItDid) {
  GraphMaker m = yolo_like();
  BuildOptions o;
  o.scales = m.scales();
  auto r = build_engine(m.graph, o);
  ASSERT_TRUE(r) << r.status().message();
  for (const char* pass : {"fold_constants", "trim_postprocess", "assign_precision",
                           "fuse_conv_activation", "fuse_residual_add", "insert_io_reformats",
                           "insert_precision_converts", "remove_concat", "plan_memory"})
    ASSERT_NE(find_pass(*r, pass), nullptr) << pass;
  EXPECT_EQ(find_pass(*r, "fuse_conv_activation")->summary, "7 Conv+SiLU, 0 Conv+Sigmoid");
  EXPECT_NE(find_pass(*r, "fuse_residual_add")->summary.find("1 Add"), std::string::npos);
  EXPECT_NE(find_pass(*r, "fold_constants")->summary.find("0 nodes"), std::string::npos);
  EXPECT_NE(find_pass(*r, "plan_memory")->summary.find("peak"), std::string::npos);
}

// Every Concat input with another scale than its Concat: the producers do the reference's
// requantizing copy themselves — a conv read by the Concat alone rounding at its own scale
// first (conv_scale), the fused Add's third rounding, a MaxPool and a Resize rounding at their
// own scale (requant_from), and the stem conv and a MaxPool that other layers read too writing
// the slice besides their own tensor (also_output) — and the numbers equal the reference's.
TEST(EngineBuild, MatchesTheReferenceWithUnequalConcatScales) {
  GraphMaker m = yolo_like();
  BuildOptions o;
  o.scales = m.scales();
  auto r = build_engine(m.graph, o);
  ASSERT_TRUE(r) << r.status().message();
  int rounding = 0, besides = 0;
  std::set<std::string> kinds;
  for (const EngineLayer& l : r->engine.layers) {
    rounding += l.requant_from > 0.0f;
    besides += l.also_output >= 0;
    if (l.has_fused_copy()) kinds.insert(l.op);
  }
  const std::string& s = find_pass(*r, "remove_concat")->summary;
  EXPECT_EQ(copy_layers(r->engine), 0) << s;
  EXPECT_EQ(rounding, 3) << s;  // the fused Add, pool2, the Resize
  EXPECT_EQ(besides, 3) << s;   // the stem, the downsampling conv, pool1
  EXPECT_EQ(kinds, (std::set<std::string>{"Conv+SiLU", "Conv+SiLU+Add", "MaxPool", "Resize"}))
      << s;
  expect_equal_to_reference(m.graph, o);
}

// fuse_concat_copies off (QYOLO_KEEP_CONCAT_COPIES=1): a Requantize layer for each of those
// inputs instead, the same numbers.
TEST(EngineBuild, KeptConcatCopiesGiveTheSameNumbers) {
  GraphMaker m = yolo_like();
  BuildOptions o;
  o.scales = m.scales();
  o.fuse_concat_copies = false;
  auto r = build_engine(m.graph, o);
  ASSERT_TRUE(r) << r.status().message();
  const auto& layers = r->engine.layers;
  const std::string& s = find_pass(*r, "remove_concat")->summary;
  EXPECT_EQ(copy_layers(r->engine), 6) << s;
  EXPECT_EQ(std::count_if(layers.begin(), layers.end(),
                          [](const EngineLayer& l) { return l.has_fused_copy(); }),
            0)
      << s;
  EXPECT_NE(s.find("6 copied (6 QYOLO_KEEP_CONCAT_COPIES=1)"), std::string::npos) << s;
  expect_equal_to_reference(m.graph, o);
}

// Equal scales at every Concat (what a QAT cache has): producers write into their slices and
// no copy is left, and the numbers still equal the reference's.
TEST(EngineBuild, ConcatWithEqualScalesCostsNothing) {
  GraphMaker m = yolo_like();
  auto scales = m.scales();
  for (const Node& n : m.graph.nodes)
    if (n.op_type == "Concat")
      for (const auto& in : n.inputs) scales[in] = scales[n.outputs[0]];
  BuildOptions o;
  o.scales = scales;
  auto r = build_engine(m.graph, o);
  ASSERT_TRUE(r) << r.status().message();
  const std::string& s = find_pass(*r, "remove_concat")->summary;
  // A value that several Concats read is written into one of them only; here none is.
  EXPECT_NE(s.find("3 Concat removed"), std::string::npos) << s;
  int slices = 0;
  for (const EngineTensor& t : r->engine.tensors) slices += t.layout.offset > 0;
  EXPECT_EQ(copy_layers(r->engine), 0) << s;
  EXPECT_GE(slices, 3);
  expect_equal_to_reference(m.graph, o);
}

TEST(EngineBuild, Fp16FallbackIsListedAndExact) {
  GraphMaker m = yolo_like();
  auto scales = m.scales();
  scales.erase("neck/out");  // no scale: neck's Conv+SiLU falls back to FP16
  BuildOptions o;
  o.scales = scales;
  o.fp16_layers = {"head/Conv"};
  auto r = build_engine(m.graph, o);
  ASSERT_TRUE(r) << r.status().message();
  std::map<std::string, std::string> reasons;
  for (const EngineFallback& f : r->engine.fallbacks) reasons[f.layer] = f.reason;
  EXPECT_EQ(reasons["head/Conv"], "--layerPrecisions");
  EXPECT_EQ(reasons["neck/Conv"], "no scale for 'neck/out'");
  EXPECT_EQ(reasons.count("stem/Conv"), 0u);
  expect_equal_to_reference(m.graph, o);
}

TEST(EngineBuild, ConvSigmoidFusesAndMatches) {
  GraphMaker m = yolo_like(/*sigmoid_head=*/true);
  BuildOptions o;
  o.scales = m.scales();
  auto r = build_engine(m.graph, o);
  ASSERT_TRUE(r) << r.status().message();
  EXPECT_EQ(find_pass(*r, "fuse_conv_activation")->summary, "7 Conv+SiLU, 1 Conv+Sigmoid");
  expect_equal_to_reference(m.graph, o);
  o.fp16_layers = {"obj/Conv", "obj/Sigmoid"};  // the fp16 version of the same fusion
  expect_equal_to_reference(m.graph, o);
}

TEST(EngineBuild, IoFormatsAndReformatsOnlyAtTheEdges) {
  GraphMaker m = yolo_like();
  BuildOptions o;
  o.scales = m.scales();
  for (IoFormat in : {IoFormat::kFp32Chw, IoFormat::kInt8Hwc4, IoFormat::kFp16Chw16})
    for (IoFormat out : {IoFormat::kFp32Chw, IoFormat::kInt8Chw32}) {
      o.input_format = in;
      o.output_format = out;
      auto r = build_engine(m.graph, o);
      ASSERT_TRUE(r) << r.status().message();
      const auto& layers = r->engine.layers;
      EXPECT_EQ(layers.front().kind, LayerKind::kInputReformat);
      EXPECT_EQ(layers.back().kind, LayerKind::kOutputReformat);
      int reformats = 0;
      for (const EngineLayer& l : layers)
        reformats += l.kind == LayerKind::kInputReformat || l.kind == LayerKind::kOutputReformat;
      EXPECT_EQ(reformats, 2);
      if (in != IoFormat::kFp16Chw16 && out != IoFormat::kInt8Chw32)  // fp16 input rounds
        expect_equal_to_reference(m.graph, o);
    }
  o.input_format = IoFormat::kInt8Hwc4;
  o.scales.erase("images");
  auto r = build_engine(m.graph, o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.status().message().find("needs its scale"), std::string::npos);
}

TEST(EngineBuild, DisabledFusionBuildsTheUnfusedGraph) {
  GraphMaker m = yolo_like();
  BuildOptions o;
  o.scales = m.scales();
  o.fusion = false;
  auto r = build_engine(m.graph, o);
  ASSERT_TRUE(r) << r.status().message();
  int convs = 0, sigmoids = 0, adds = 0;
  for (const EngineLayer& l : r->engine.layers) {
    convs += l.op == "Conv";
    sigmoids += l.op == "Sigmoid";
    adds += l.op == "Add";
  }
  EXPECT_EQ(convs, 8);
  EXPECT_EQ(sigmoids, 7);
  EXPECT_EQ(adds, 1);
  EXPECT_EQ(find_pass(*r, "fuse_conv_activation")->summary, "off (QYOLO_DISABLE_FUSION=1)");
  // It runs, and rounds more often than the fused graph: close, not equal.
  auto out = testing::run_cpu_engine(r->engine, testing::random_image());
  ASSERT_TRUE(out) << out.status().message();
}

TEST(EngineBuild, UnsupportedOpsAreNamed) {
  GraphMaker m = yolo_like();
  for (Node& n : m.graph.nodes)
    if (n.name == "m.add") n.op_type = "Sub";
  BuildOptions o;
  o.scales = m.scales();
  auto r = build_engine(m.graph, o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.status().message().find("Sub 'm.add'"), std::string::npos) << r.status().message();
}

TEST(EngineBuild, MemoryPlanSharesBytesOnlyBetweenDisjointLifetimes) {
  std::vector<ArenaBuffer> b = {{0, 100, 0, 2}, {0, 50, 1, 3}, {0, 100, 3, 4}, {0, 10, 4, 5}};
  const uint64_t peak = plan_arena(b);
  EXPECT_EQ(peak, 150u);
  for (size_t i = 0; i < b.size(); ++i)
    for (size_t j = i + 1; j < b.size(); ++j) {
      const bool live_together =
          b[i].first_layer <= b[j].last_layer && b[j].first_layer <= b[i].last_layer;
      const bool overlap = b[i].offset < b[j].offset + b[j].bytes_per_image &&
                           b[j].offset < b[i].offset + b[i].bytes_per_image;
      EXPECT_FALSE(live_together && overlap) << i << " " << j;
    }
  GraphMaker m = yolo_like();
  BuildOptions o;
  o.scales = m.scales();
  auto r = build_engine(m.graph, o);
  ASSERT_TRUE(r);
  EXPECT_LT(r->engine.arena_bytes_per_image, r->unplanned_bytes_per_image);
  o.max_batch = 3;
  auto r3 = build_engine(m.graph, o);
  ASSERT_TRUE(r3);
  EXPECT_EQ(r3->engine.arena_bytes(), 3 * r->engine.arena_bytes_per_image);
}

}  // namespace
}  // namespace qyolo
