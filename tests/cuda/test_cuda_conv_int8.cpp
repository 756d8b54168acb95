// The CUDA INT8 convolutions against the CPU reference (qyolo/conv_int8.h): every yolov5n and
// yolov5s convolution shape at batch 1 and 3, and every tile variant on awkward shapes.
// Integer accumulators (the kInt32Accumulator output) must match exactly. Quantized outputs
// must match within one step: the GPU's SiLU uses the fast exp/divide and requantization
// multiplies by 1/output_scale, so values within a few ulps of a rounding boundary may round
// the other way; the test counts them. Skipped, with a message, where there is no GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "conv_shapes_json.h"
#include "qyolo/conv_int8.h"
#include "qyolo/cuda.h"
#include "qyolo/cuda_conv.h"

namespace qyolo {
namespace {

using cuda::DeviceBuffer;

#define CONV_ASSERT_OK(expr)                        \
  do {                                              \
    const ::qyolo::Status conv_status_ = (expr);    \
    ASSERT_TRUE(conv_status_.is_ok()) << conv_status_.message(); \
  } while (0)

#define SKIP_WITHOUT_GPU()                                                                 \
  if (cuda::device_count() == 0)                                                           \
  GTEST_SKIP() << "no CUDA device (cudaGetDeviceCount reports none): GPU test not run"

std::string data_dir() {
  if (const char* env = std::getenv("QYOLO_DATA"); env && *env) return env;
  return QYOLO_TEST_DATA;
}

// What one case writes and how: the epilogue variants cycle over the shapes.
struct Variant {
  ConvOutput output = ConvOutput::kInt8;
  bool silu = true;
  bool residual = false;
  bool slice = false;  // input and output are channel slices of wider tensors
  bool conv_scale = false;  // rounded at the conv's own scale first (ConvInt8Epilogue)
};

const Variant kVariants[] = {
    {ConvOutput::kInt8, true, false, false},    {ConvOutput::kInt8, false, false, true},
    {ConvOutput::kInt8, true, true, false},     {ConvOutput::kFloat16, false, false, false},
    {ConvOutput::kFloat16, true, true, true},   {ConvOutput::kInt8, true, true, true},
    {ConvOutput::kInt8, true, true, false, true}, {ConvOutput::kInt8, true, false, true, true},
};

struct Totals {
  int cases = 0;
  int64_t accumulators = 0, accumulator_mismatches = 0;
  int64_t outputs = 0, identical = 0, one_step = 0, worse = 0;
  int64_t untouched_violations = 0;

  void add(const Totals& o) {
    cases += o.cases;
    accumulators += o.accumulators, accumulator_mismatches += o.accumulator_mismatches;
    outputs += o.outputs, identical += o.identical, one_step += o.one_step, worse += o.worse;
    untouched_violations += o.untouched_violations;
  }
  std::string summary() const {
    char line[400];
    std::snprintf(line, sizeof line,
                  "%d cases: int32 accumulators %lld/%lld exact; outputs %lld/%lld identical, "
                  "%lld one step (%.2g%%), %lld worse; %lld writes outside the slice",
                  cases, (long long)(accumulators - accumulator_mismatches), (long long)accumulators,
                  (long long)identical, (long long)outputs, (long long)one_step,
                  outputs ? 100.0 * one_step / outputs : 0.0, (long long)worse,
                  (long long)untouched_violations);
    return line;
  }
};

float half_to_float(uint16_t h) {
  const int exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  const float magnitude = exponent == 0 ? std::ldexp(float(mantissa), -24)
                                        : std::ldexp(float(mantissa | 0x400), exponent - 25);
  return (h & 0x8000) ? -magnitude : magnitude;
}

// Distance between two halves in units in the last place (same-sign values; 0 for equal bits).
int64_t half_ulps(uint16_t a, uint16_t b) {
  auto ordered = [](uint16_t h) { return (h & 0x8000) ? -int64_t(h & 0x7fff) : int64_t(h); };
  return std::llabs(ordered(a) - ordered(b));
}

// The stem's geometry: an int8:hwc4 input runs on the space-to-depth kernels.
bool stem_like(const ConvInt8Shape& s) {
  return s.in_channels <= 4 && s.stride == 2 && s.kernel % 2 == 0 && s.pad % 2 == 0;
}

// The tile variant of that name, -1 if there is none.
int tile_named(const std::string& name) {
  for (int t = 0; t < cuda::conv_int8_tile_count(); ++t)
    if (cuda::conv_int8_tile_name(t) == name) return t;
  return -1;
}

// Whether `tile` runs `s` with the edge tests' input layout (hwc4 for the stem's shapes).
bool tile_runs(int tile, const ConvInt8Shape& s) {
  cuda::ConvInt8Args probe;
  probe.shape = s;
  probe.input_layout = {stem_like(s) ? 4 : round_up(s.in_channels, 16), 0};
  return cuda::conv_int8_tile_supports(tile, probe);
}

void fill_int8(std::vector<int8_t>& v, std::mt19937& rng) {
  std::uniform_int_distribution<int> d(-128, 127);
  for (auto& x : v) x = static_cast<int8_t>(d(rng));
}

// Runs `shape` on the GPU with `tile` (-1: the heuristic's) in the int32 and the epilogue mode
// and compares both with the reference. Returns the counts; failures are gtest failures.
// `split_k` as ConvInt8Args's (0: the heuristic's), with a zeroed workspace as an engine has: the
// second run (the epilogue) also checks that the first left the tiles' counters at zero.
Totals run_case(const std::string& label, const ConvInt8Shape& shape, const Variant& variant,
                int tile, uint32_t seed, int split_k = 0) {
  Totals t;
  t.cases = 1;
  std::mt19937 rng(seed);
  const int cin = shape.in_channels, cout = shape.out_channels;
  const bool hwc4 = stem_like(shape) && !variant.slice;
  ChannelSlice in_layout{hwc4 ? 4 : round_up(cin, 16), 0};
  if (variant.slice && !hwc4) in_layout = {round_up(cin, 16) + 32, 16};
  ChannelSlice out_layout{cout, 0};
  if (variant.slice) out_layout = {round_up(cout, 16) + 48, 32};
  const ChannelSlice res_layout{round_up(cout, 16) + (variant.slice ? 16 : 0), variant.slice ? 16 : 0};

  const int64_t in_pixels = int64_t{shape.batch} * shape.in_h * shape.in_w;
  const int64_t out_pixels = shape.out_pixels();
  std::vector<int8_t> input(in_pixels * in_layout.stride), weights(size_t(cout) * shape.kernel *
                                                                   shape.kernel * cin);
  fill_int8(input, rng);  // the padding channels too: their weights are zero
  fill_int8(weights, rng);
  std::vector<int8_t> residual;
  if (variant.residual) {
    residual.resize(out_pixels * res_layout.stride);
    fill_int8(residual, rng);
  }
  // Scales that put y in roughly [-12, 12] so SiLU's curved part and clamping are both used.
  const double acc_std = std::sqrt(double(shape.kernel) * shape.kernel * cin) * 5461.0;
  std::uniform_real_distribution<float> unit(0.5f, 1.5f), centered(-2.0f, 2.0f);
  std::vector<float> weight_scales(cout), bias(cout);
  const float input_scale = 0.05f;
  for (int c = 0; c < cout; ++c) {
    weight_scales[c] = float(4.0 / acc_std / input_scale) * unit(rng);
    bias[c] = centered(rng);
  }

  ConvInt8Epilogue epilogue;
  epilogue.input_scale = input_scale;
  epilogue.weight_scales = weight_scales.data();
  epilogue.bias = bias.data();
  epilogue.silu = variant.silu;
  epilogue.residual = variant.residual ? residual.data() : nullptr;
  epilogue.residual_layout = res_layout;
  epilogue.residual_scale = 0.03f;
  epilogue.output = variant.output;
  // The conv's own scale clamps |y| above ~10: the clamp before the add is exercised too.
  if (variant.conv_scale) epilogue.conv_scale = 0.08f;

  // Reference accumulators, then an output scale that clamps the largest few values.
  const std::vector<int32_t> acc =
      conv_int8_accumulate_reference(shape, input.data(), in_layout, weights.data());
  float amax = 0.0f;
  for (int64_t m = 0; m < out_pixels; m += 7)
    for (int c = 0; c < cout; ++c) {
      const int8_t r = variant.residual ? residual[m * res_layout.stride + res_layout.offset + c] : 0;
      amax = std::max(amax, std::fabs(conv_int8_epilogue_value(acc[m * cout + c], c, epilogue, r)));
    }
  epilogue.output_scale = std::max(amax, 1e-3f) / 127.0f * 0.9f;

  // Device copies.
  const ConvWeightFormat format = conv_int8_weight_format(shape, in_layout);
  const std::vector<int8_t> packed = pack_conv_int8_weights(shape, format, weights.data());
  const size_t element = variant.output == ConvOutput::kInt8 ? 1 : 2;
  const size_t out_elements = size_t(out_pixels) * out_layout.stride;
  auto d_input = DeviceBuffer::allocate(input.size());
  auto d_weights = DeviceBuffer::allocate(packed.size());
  auto d_scales = DeviceBuffer::allocate(cout * sizeof(float));
  auto d_bias = DeviceBuffer::allocate(cout * sizeof(float));
  auto d_residual = DeviceBuffer::allocate(std::max<size_t>(residual.size(), 16));
  auto d_acc = DeviceBuffer::allocate(size_t(out_pixels) * cout * 4);
  auto d_out = DeviceBuffer::allocate(out_elements * element);
  for (auto* b : {&d_input, &d_weights, &d_scales, &d_bias, &d_residual, &d_acc, &d_out})
    if (!b->has_value()) {
      ADD_FAILURE() << label << ": " << b->status().message();
      return t;
    }
  auto ok = [&](const Status& s) {
    if (!s.is_ok()) ADD_FAILURE() << label << ": " << s.message();
    return s.is_ok();
  };
  if (!ok(d_input->upload(input.data(), input.size())) ||
      !ok(d_weights->upload(packed.data(), packed.size())) ||
      !ok(d_scales->upload(weight_scales.data(), cout * 4)) ||
      !ok(d_bias->upload(bias.data(), cout * 4)) ||
      (variant.residual && !ok(d_residual->upload(residual.data(), residual.size()))) ||
      !ok(d_acc->fill(0x5a)) || !ok(d_out->fill(0x5a)))
    return t;

  cuda::ConvInt8Args args;
  args.shape = shape;
  args.input = d_input->as<int8_t>();
  args.input_layout = in_layout;
  args.weights = d_weights->as<int8_t>();
  args.tile = tile;
  const int resolved = tile < 0 ? cuda::conv_int8_pick_tile(args) : tile;
  const int split = split_k > 0 ? split_k : cuda::conv_int8_pick_split(args, resolved);
  const std::string tile_name =
      std::string(cuda::conv_int8_tile_name(resolved)) + (split > 1 ? " split " + std::to_string(split) : "");
  const size_t workspace_bytes = std::max(cuda::conv_int8_split_workspace_bytes(),
                                          cuda::conv_int8_split_workspace_bytes(args, resolved, split));
  auto d_workspace = DeviceBuffer::allocate(workspace_bytes);
  if (!d_workspace.has_value() || !ok(d_workspace->fill(0))) {
    if (!d_workspace.has_value()) ADD_FAILURE() << label << ": " << d_workspace.status().message();
    return t;
  }
  args.split_k = split_k;
  args.workspace = d_workspace->data();
  args.workspace_bytes = workspace_bytes;

  // 1. raw accumulators, exact
  args.epilogue.output = ConvOutput::kInt32Accumulator;
  args.output = d_acc->data();
  args.output_layout = {cout, 0};
  if (!ok(cuda::conv_int8(args, nullptr)) || !ok(cuda::check(cudaDeviceSynchronize(), label.c_str())))
    return t;
  std::vector<int32_t> gpu_acc(size_t(out_pixels) * cout);
  if (!ok(d_acc->download(gpu_acc.data(), gpu_acc.size() * 4))) return t;
  t.accumulators = int64_t(gpu_acc.size());
  for (size_t i = 0; i < gpu_acc.size(); ++i)
    if (gpu_acc[i] != acc[i]) {
      if (t.accumulator_mismatches++ < 5)
        ADD_FAILURE() << label << " [" << tile_name << "]: accumulator of pixel " << i / cout
                      << " channel " << i % cout << " is " << gpu_acc[i] << ", reference " << acc[i];
    }

  // 2. the fused epilogue
  args.epilogue = epilogue;
  args.epilogue.weight_scales = d_scales->as<float>();
  args.epilogue.bias = d_bias->as<float>();
  args.epilogue.residual = variant.residual ? d_residual->as<int8_t>() : nullptr;
  args.output = d_out->data();
  args.output_layout = out_layout;
  if (!ok(cuda::conv_int8(args, nullptr)) || !ok(cuda::check(cudaDeviceSynchronize(), label.c_str())))
    return t;
  std::vector<uint8_t> gpu_out(out_elements * element), ref_out(out_elements * element, 0x5a);
  if (!ok(d_out->download(gpu_out.data(), gpu_out.size()))) return t;
  conv_int8_epilogue_reference(shape, acc.data(), epilogue, ref_out.data(), out_layout);

  for (size_t i = 0; i < out_elements; ++i) {
    const int c = int(i % out_layout.stride) - out_layout.offset;
    const bool inside = c >= 0 && c < cout;
    // Int8: distance in quantization steps. Half: one step is one half ulp, or 4e-5 absolute
    // where a residual add cancels (the GPU's few-ulp float error is relative to the terms,
    // |y| <= ~12 here, not to their small sum).
    int64_t diff;
    if (element == 1) {
      diff = std::abs(int(int8_t(gpu_out[i])) - int(int8_t(ref_out[i])));
    } else {
      uint16_t g, r;
      std::memcpy(&g, &gpu_out[2 * i], 2);
      std::memcpy(&r, &ref_out[2 * i], 2);
      diff = half_ulps(g, r);
      if (diff > 1 && inside && std::fabs(half_to_float(g) - half_to_float(r)) <= 4e-5f) diff = 1;
    }
    if (!inside) {
      if (diff != 0 && t.untouched_violations++ < 3)
        ADD_FAILURE() << label << " [" << tile_name << "]: wrote outside its channel slice at "
                      << i;
      continue;
    }
    ++t.outputs;
    if (diff == 0) {
      ++t.identical;
    } else if (diff == 1) {
      ++t.one_step;
    } else if (t.worse++ < 5) {
      ADD_FAILURE() << label << " [" << tile_name << "]: output pixel " << i / out_layout.stride
                    << " channel " << c << " differs by " << diff
                    << (element == 1 ? " steps" : " half ulps");
    }
  }
  // The epilogue recomputes every value near a rounding boundary exactly, so the outputs are
  // identical but where glibc's expf (the reference's) is not correctly rounded and the value
  // sits on a boundary: about 4 in 10^8 int8 outputs here. Half outputs also differ where a
  // residual add cancels (above).
  const int64_t allowed = element == 1 ? t.outputs / 1000000 : t.outputs / 100;
  EXPECT_LE(t.one_step, std::max<int64_t>(8, allowed))
      << label << " [" << tile_name << "]: too many one-step differences";
  return t;
}

std::string shape_label(const std::string& model, const std::string& node, const ConvInt8Shape& s) {
  char text[200];
  std::snprintf(text, sizeof text, "%s %s %dx%dx%d->%d k%d s%d b%d", model.c_str(), node.c_str(),
                s.in_channels, s.in_h, s.in_w, s.out_channels, s.kernel, s.stride, s.batch);
  return text;
}

TEST(ConvInt8Cuda, EveryYolov5ShapeMatchesReference) {
  SKIP_WITHOUT_GPU();
  if (auto d = cuda::describe_device(0)) std::printf("device: %s\n", d->c_str());
  const std::string path = data_dir() + "/yolov5_conv_shapes_640.json";
  Totals all;
  for (const std::string model : {"yolov5n", "yolov5s"}) {
    auto convs = testing::read_conv_shapes(path, model);
    ASSERT_TRUE(convs.has_value()) << convs.status().message();
    // Each distinct geometry once; the variants cycle over them.
    std::set<std::tuple<int, int, int, int, int, int>> seen;
    for (const int batch : {1, 3}) {
      Totals per_batch;
      int index = 0;
      seen.clear();
      for (const auto& entry : *convs) {
        ConvInt8Shape s = entry.shape;
        if (!seen.insert({s.in_channels, s.in_h, s.out_channels, s.kernel, s.stride, s.pad}).second)
          continue;
        s.batch = batch;
        const Variant& v = kVariants[index % std::size(kVariants)];
        per_batch.add(run_case(shape_label(model, entry.onnx_node, s), s, v, -1,
                               uint32_t(1000 * batch + index)));
        ++index;
      }
      std::printf("%s batch %d: %s\n", model.c_str(), batch, per_batch.summary().c_str());
      all.add(per_batch);
    }
  }
  std::printf("all yolov5 shapes: %s\n", all.summary().c_str());
  EXPECT_EQ(all.accumulator_mismatches, 0);
  EXPECT_EQ(all.worse, 0);
  EXPECT_EQ(all.untouched_violations, 0);
}

// Every tile variant on shapes that hit the edges: pixel counts that are not a multiple of any
// tile, 255 and 520 output channels, 16- and 48-channel taps (K steps that straddle taps), odd
// widths for the hwc4 stem path, 64- to 192-channel taps for the im2col variants, 32-channel
// taps for the direct 3x3 kernels, and every epilogue variant.
TEST(ConvInt8Cuda, EveryTileVariantOnEdgeShapes) {
  SKIP_WITHOUT_GPU();
  // batch, cin, h, w, cout, kernel, stride, pad
  const std::vector<ConvInt8Shape> shapes = {
      {3, 64, 20, 23, 255, 1, 1, 0}, {2, 48, 17, 19, 96, 3, 2, 1}, {1, 16, 33, 31, 40, 3, 1, 1},
      {1, 160, 9, 9, 520, 3, 1, 1},  {2, 32, 12, 12, 64, 1, 1, 0}, {1, 3, 64, 62, 32, 6, 2, 2},
      {2, 3, 37, 41, 16, 6, 2, 2},   {1, 4, 30, 30, 64, 4, 2, 2},  {3, 3, 21, 19, 48, 6, 2, 2},
      {2, 2, 15, 17, 32, 2, 2, 0},   {1, 3, 16, 16, 8, 6, 2, 4},
      // For the im2col variants (K per tap a multiple of 64): odd sizes, strides 1 and 2, tiles
      // that run past the last image, several K steps per tap.
      {2, 64, 17, 19, 96, 3, 2, 1},  {1, 128, 13, 11, 255, 3, 1, 1}, {3, 64, 9, 7, 40, 3, 1, 1},
      {1, 192, 6, 10, 64, 3, 2, 1},
      // For the direct 3x3 kernels (K per tap 32): strides 1 and 2, padded channels, rows wider
      // than a tile, partial tiles, no padding.
      {2, 32, 17, 19, 64, 3, 2, 1},  {1, 24, 21, 37, 32, 3, 1, 1},  {3, 32, 9, 70, 48, 3, 1, 1},
      {1, 32, 10, 13, 20, 3, 2, 1},  {2, 32, 11, 12, 32, 3, 1, 0},
  };
  Totals all;
  int index = 0;
  for (int tile = 0; tile < cuda::conv_int8_tile_count(); ++tile) {
    Totals per_tile;
    for (const auto& s : shapes) {
      if (!tile_runs(tile, s)) continue;
      Variant v = kVariants[index % std::size(kVariants)];
      if (stem_like(s)) v.slice = false;  // the hwc4 input is a whole tensor
      per_tile.add(run_case(shape_label("edge", cuda::conv_int8_tile_name(tile), s), s, v, tile,
                            uint32_t(77 + index)));
      ++index;
    }
    std::printf("tile %-22s %s\n", cuda::conv_int8_tile_name(tile), per_tile.summary().c_str());
    all.add(per_tile);
  }
  EXPECT_EQ(all.accumulator_mismatches, 0);
  EXPECT_EQ(all.worse, 0);
  EXPECT_EQ(all.untouched_violations, 0);
}

// Split K forced on every mma.sync tile over the edge shapes with several K steps: parts that
// start inside a tap (16- and 48-channel taps, the stem's space-to-depth taps), uneven parts,
// more parts than the heuristic takes; accumulators exact and outputs as unsplit.
TEST(ConvInt8Cuda, SplitKOnEveryMmaTileMatchesReference) {
  SKIP_WITHOUT_GPU();
  // batch, cin, h, w, cout, kernel, stride, pad
  const std::vector<ConvInt8Shape> shapes = {
      {2, 48, 17, 19, 96, 3, 2, 1}, {1, 16, 33, 31, 40, 3, 1, 1}, {1, 160, 9, 9, 520, 3, 1, 1},
      {1, 3, 64, 62, 32, 6, 2, 2},  {3, 3, 21, 19, 48, 6, 2, 2},  {1, 128, 13, 11, 255, 3, 1, 1},
      {1, 192, 6, 10, 64, 3, 2, 1}, {1, 256, 20, 20, 256, 3, 1, 1}, {2, 96, 7, 9, 80, 1, 1, 0},
  };
  Totals all;
  int runs = 0;
  for (int tile = 0; tile < cuda::conv_int8_tile_count(); ++tile) {
    if (std::string(cuda::conv_int8_tile_name(tile)).rfind("mma_", 0) != 0) continue;
    for (const auto& s : shapes) {
      if (!tile_runs(tile, s)) continue;
      for (const int split : {2, 5}) {
        Variant v = kVariants[runs % std::size(kVariants)];
        if (stem_like(s)) v.slice = false;
        all.add(run_case(shape_label("split " + std::to_string(split), cuda::conv_int8_tile_name(tile), s),
                         s, v, tile, uint32_t(501 + runs), split));
        ++runs;
      }
    }
  }
  std::printf("split K on the mma.sync tiles: %d runs, %s\n", runs, all.summary().c_str());
  EXPECT_GT(runs, 0);
  EXPECT_EQ(all.accumulator_mismatches, 0);
  EXPECT_EQ(all.worse, 0);
  EXPECT_EQ(all.untouched_violations, 0);
}

// output_block 32 (an engine head written straight into int8:chw32): the same values as the
// NHWC output, every tile variant, with and without a residual; the padded channels zero in a
// buffer poisoned first.
TEST(ConvInt8Cuda, BlockedChw32OutputEqualsTheNhwcOutput) {
  SKIP_WITHOUT_GPU();
  // batch, cin, h, w, cout, kernel, stride, pad
  const std::vector<ConvInt8Shape> shapes = {
      {3, 64, 20, 23, 255, 1, 1, 0}, {2, 64, 9, 7, 255, 3, 1, 1}, {1, 128, 16, 16, 32, 1, 1, 0}};
  std::mt19937 rng(11);
  int64_t compared = 0, runs = 0;
  for (size_t k = 0; k < shapes.size(); ++k) {
    const ConvInt8Shape& s = shapes[k];
    const bool with_residual = k == 1;
    const int cout = s.out_channels, stride = round_up(cout, 16), blocks = (cout + 31) / 32;
    const int64_t pixels = s.out_pixels(), hw = int64_t{s.out_h()} * s.out_w();
    std::vector<int8_t> input(size_t(s.batch) * s.in_h * s.in_w * round_up(s.in_channels, 16));
    std::vector<int8_t> weights(size_t(cout) * s.kernel * s.kernel * s.in_channels);
    std::vector<int8_t> residual(size_t(pixels) * stride);
    fill_int8(input, rng);
    fill_int8(weights, rng);
    fill_int8(residual, rng);
    std::vector<float> scales(cout, 2e-4f), bias(cout, 0.25f);
    const ChannelSlice in_layout{round_up(s.in_channels, 16), 0};
    const auto packed =
        pack_conv_int8_weights(s, conv_int8_weight_format(s, in_layout), weights.data());
    auto d_in = DeviceBuffer::allocate(input.size());
    auto d_w = DeviceBuffer::allocate(packed.size());
    auto d_scales = DeviceBuffer::allocate(cout * 4);
    auto d_bias = DeviceBuffer::allocate(cout * 4);
    auto d_res = DeviceBuffer::allocate(residual.size());
    auto d_nhwc = DeviceBuffer::allocate(size_t(pixels) * stride);
    auto d_blocked = DeviceBuffer::allocate(size_t(s.batch) * blocks * hw * 32);
    ASSERT_TRUE(d_in && d_w && d_scales && d_bias && d_res && d_nhwc && d_blocked);
    CONV_ASSERT_OK(d_in->upload(input.data(), input.size()));
    CONV_ASSERT_OK(d_w->upload(packed.data(), packed.size()));
    CONV_ASSERT_OK(d_scales->upload(scales.data(), cout * 4));
    CONV_ASSERT_OK(d_bias->upload(bias.data(), cout * 4));
    CONV_ASSERT_OK(d_res->upload(residual.data(), residual.size()));
    cuda::ConvInt8Args a;
    a.shape = s;
    a.input = d_in->as<int8_t>();
    a.input_layout = in_layout;
    a.weights = d_w->as<int8_t>();
    a.epilogue.input_scale = 0.05f;
    a.epilogue.weight_scales = d_scales->as<float>();
    a.epilogue.bias = d_bias->as<float>();
    a.epilogue.silu = true;
    a.epilogue.output_scale = 0.04f;
    if (with_residual) {
      a.epilogue.residual = d_res->as<int8_t>();
      a.epilogue.residual_layout = {stride, 0};
      a.epilogue.residual_scale = 0.03f;
      a.epilogue.conv_scale = 0.05f;
    }
    a.output_layout = {stride, 0};
    for (int tile = 0; tile < cuda::conv_int8_tile_count(); ++tile) {
      if (!cuda::conv_int8_tile_supports(tile, a)) continue;
      a.tile = tile;
      a.output = d_nhwc->data();
      a.output_block = 0;
      CONV_ASSERT_OK(cuda::conv_int8(a, nullptr));
      CONV_ASSERT_OK(d_blocked->fill(0x5a));
      a.output = d_blocked->data();
      a.output_block = 32;
      CONV_ASSERT_OK(cuda::conv_int8(a, nullptr));
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      std::vector<int8_t> nhwc(d_nhwc->size()), blocked(d_blocked->size());
      CONV_ASSERT_OK(d_nhwc->download(nhwc.data(), nhwc.size()));
      CONV_ASSERT_OK(d_blocked->download(blocked.data(), blocked.size()));
      int64_t bad = 0;
      for (int64_t m = 0; m < pixels; ++m)
        for (int c = 0; c < blocks * 32; ++c) {
          const int64_t image = m / hw, at = m % hw;
          const int8_t got = blocked[((image * blocks + c / 32) * hw + at) * 32 + c % 32];
          const int8_t want = c < cout ? nhwc[m * stride + c] : 0;
          bad += got != want;
          ++compared;
        }
      EXPECT_EQ(bad, 0) << "shape " << k << " tile " << cuda::conv_int8_tile_name(tile);
      ++runs;
    }
  }
  std::printf("int8:chw32 output: %lld values over %lld runs compared with the NHWC output\n",
              (long long)compared, (long long)runs);
}

// The split-K heuristic and its workspace sizes are host code: this runs everywhere (the SM
// count is the device's, 132 where there is none, as the heuristic assumes).
TEST(ConvInt8Cuda, SplitHeuristicSplitsOnlySmallProblems) {
  int sms = 132, device = 0, count = 0;
  if (cudaGetDeviceCount(&count) == cudaSuccess && count > 0 && cudaGetDevice(&device) == cudaSuccess)
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  cudaGetLastError();
  const int mma = tile_named("mma_64x64_w4x2_s4"), big = tile_named("mma_128x128_w2x2_s4");
  const int wgmma = tile_named("wgmma_64x64_s4");
  ASSERT_GE(mma, 0);
  ASSERT_GE(big, 0);
  ASSERT_GE(wgmma, 0);
  cuda::ConvInt8Args a;
  a.shape = {1, 256, 20, 20, 256, 3, 1, 1};  // 7 x 4 = 28 tiles of 64 x 64, 36 K steps
  a.input_layout = {256, 0};
  const int tiles = 28, steps = 36;
  const int expected = tiles * 2 > sms ? 1 : std::max(1, std::min({sms / tiles, steps / 6, 8}));
  EXPECT_EQ(cuda::conv_int8_pick_split(a, mma), expected);
  if (expected >= 2) {
    // Counters (256-byte aligned), then a 64 x 64 int32 partial a unit.
    EXPECT_EQ(cuda::conv_int8_split_workspace_bytes(a, mma, expected),
              256 + size_t(tiles) * expected * 64 * 64 * 4);
    EXPECT_LE(cuda::conv_int8_split_workspace_bytes(a, mma, expected),
              cuda::conv_int8_split_workspace_bytes());
  }
  EXPECT_EQ(cuda::conv_int8_pick_split(a, wgmma), 1);  // not an mma.sync tile
  EXPECT_EQ(cuda::conv_int8_pick_split(a, big), 1);    // tiles above 64 x 64 are not split
  EXPECT_EQ(cuda::conv_int8_split_workspace_bytes(a, mma, 1), 0u);
  a.shape.batch = 16;  // 100 x 4 = 400 tiles: enough work unsplit
  EXPECT_EQ(cuda::conv_int8_pick_split(a, mma), 1);
  a.shape = {1, 256, 20, 20, 256, 1, 1, 0};  // 4 K steps: too few to split
  EXPECT_EQ(cuda::conv_int8_pick_split(a, mma), 1);
}

// Argument checks happen before anything touches the GPU, so this runs everywhere.
TEST(ConvInt8Cuda, RejectsBadArguments) {
  alignas(16) static int8_t dummy[64];
  cuda::ConvInt8Args good;
  good.shape = {1, 32, 8, 8, 16, 3, 1, 1};
  good.input = dummy;
  good.input_layout = {32, 0};
  good.weights = dummy;
  good.output = dummy;
  good.output_layout = {16, 0};
  static const float scales[16] = {};
  good.epilogue.weight_scales = scales;

  auto expect_error = [](cuda::ConvInt8Args a, const std::string& needle) {
    const Status s = cuda::conv_int8(a, nullptr);
    EXPECT_FALSE(s.is_ok()) << needle;
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
  };
  auto a = good;
  a.input_layout = {40, 0};
  expect_error(a, "multiples of 16");
  a = good;
  a.input_layout = {32, 16};
  expect_error(a, "do not fit the pixel stride");
  a = good;
  a.output_layout = {32, 20};
  expect_error(a, "do not fit the pixel stride");
  a = good;
  a.input = dummy + 1;
  expect_error(a, "16-byte aligned");
  a = good;
  a.shape.kernel = 20;
  expect_error(a, "larger than the padded input");
  a = good;
  a.epilogue.output_scale = 0.0f;
  expect_error(a, "output_scale");
  a = good;
  a.tile = tile_named("mma_s2d_128x32_w4x1_s4");  // a space-to-depth tile for an ohwi16 convolution
  expect_error(a, "cannot run this convolution");
  a = good;
  a.epilogue.weight_scales = nullptr;
  expect_error(a, "weight_scales");
  a = good;
  a.output_block = 16;
  expect_error(a, "output_block");
  a = good;
  a.split_k = -1;
  expect_error(a, "split_k -1");
  a = good;
  a.tile = tile_named("halo3x3_s1_4x32_n32");  // a direct 3x3 tile: not mma.sync
  a.split_k = 2;
  expect_error(a, "needs an mma.sync tile");
  a = good;
  a.tile = tile_named("mma_64x64_w2x2_s4");
  a.split_k = 2;
  expect_error(a, "needs a 16-byte aligned workspace");
  a.workspace = dummy;
  a.workspace_bytes = sizeof dummy;
  expect_error(a, "needs a 16-byte aligned workspace");
}

}  // namespace
}  // namespace qyolo
