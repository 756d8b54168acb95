// Host side of the INT8 convolution: argument checks, the tile heuristic, and the launch.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <limits>
#include <vector>

#include "conv_int8_params.h"
#include "qyolo/cuda.h"
#include "qyolo/cuda_conv.h"

namespace qyolo::cuda {
namespace {

struct TileInfo {
  const char* name;
  int block_m, block_n;
  bool wgmma;  // needs sm_90a code and a compute capability 9.0 device
  bool s2d;    // runs kHwc4S2d weights (the stem), else kOhwi16
  cudaError_t (*launch)(const ConvInt8Params&, cudaStream_t);
  bool im2col = false;  // A by the copy engine's im2col mode (taps_channels % 64 == 0)
  bool stem = false;    // the direct 6x6/2 stem kernel: block_n channels at most
  int halo_stride = 0;  // a direct 3x3 kernel of this stride: 32 bytes per tap, block_n channels
};

#define QYOLO_MMA_TILE(name, bm, bn, wm, wn, stages, s2d) \
  TileInfo{#name, bm, bn, false, s2d, &launch_conv_int8_mma<bm, bn, wm, wn, stages, s2d>},
#define QYOLO_WGMMA_TILE(name, bm, bn, stages, s2d) \
  TileInfo{#name, bm, bn, true, s2d, &launch_conv_int8_wgmma<bm, bn, stages, s2d>},
#define QYOLO_IM2COL_TILE(name, bm, bn, stages) \
  TileInfo{#name, bm, bn, true, false, &launch_conv_int8_wgmma_im2col<bm, bn, stages>, true},
#define QYOLO_STEM_TILE(name, bn, tw) \
  TileInfo{#name, 4 * tw, bn, false, true, &launch_conv_int8_stem<bn, tw>, false, true},
#define QYOLO_HALO_TILE(name, bn, s, tw) \
  TileInfo{#name, 4 * tw, bn, false, false, &launch_conv_int8_halo<bn, s, tw>, false, false, s},
const TileInfo kTiles[] = {QYOLO_CONV_INT8_MMA_TILES(QYOLO_MMA_TILE)
                               QYOLO_CONV_INT8_WGMMA_TILES(QYOLO_WGMMA_TILE)
                                   QYOLO_CONV_INT8_WGMMA_IM2COL_TILES(QYOLO_IM2COL_TILE)
                                       QYOLO_CONV_INT8_STEM_TILES(QYOLO_STEM_TILE)
                                           QYOLO_CONV_INT8_HALO_TILES(QYOLO_HALO_TILE)};
#undef QYOLO_MMA_TILE
#undef QYOLO_WGMMA_TILE
#undef QYOLO_IM2COL_TILE
#undef QYOLO_STEM_TILE
#undef QYOLO_HALO_TILE
constexpr int kTileCount = sizeof(kTiles) / sizeof(kTiles[0]);

bool aligned16(const void* pointer) { return reinterpret_cast<uintptr_t>(pointer) % 16 == 0; }

// What the heuristic needs to know of the current device, read once per device.
struct DeviceTraits {
  int sms = 132;
  bool wgmma = false;
};

DeviceTraits device_traits() {
  static std::atomic<int> cache[64];  // 0: unknown; else 1 + sms * 2 + wgmma
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || device < 0 || device >= 64) {
    cudaGetLastError();
    return {};
  }
  int packed = cache[device].load(std::memory_order_relaxed);
  if (packed == 0) {
    int sms = 0, major = 0, minor = 0;
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
      cudaGetLastError();
      return {};
    }
    // wgmma code exists only where the library was built for sm_90a, and runs only on 9.0.
    const bool wgmma = QYOLO_CUDA_HAVE_SM90A && major == 9 && minor == 0;
    packed = 1 + sms * 2 + (wgmma ? 1 : 0);
    cache[device].store(packed, std::memory_order_relaxed);
  }
  return {(packed - 1) / 2, ((packed - 1) & 1) != 0};
}

// Elements per 16-byte vector of the output type.
int output_vector(ConvOutput output) {
  return output == ConvOutput::kInt8 ? 16 : output == ConvOutput::kFloat16 ? 8 : 4;
}

// The im2col variants read 64 channels of one tap per K step: K per tap a multiple of 64, a
// window (not a pointwise convolution, whose A the 2D tile mode already copies), pixel stride
// and channel offset multiples of 16 (the tensor map's), and taps the copy's offsets can reach.
bool im2col_fits(const ConvInt8Args& a) {
  const ConvInt8Shape& s = a.shape;
  const bool pointwise = s.kernel == 1 && s.stride == 1 && s.pad == 0;
  return !pointwise && round_up(s.in_channels, 16) % 64 == 0 && a.input_layout.stride % 16 == 0 &&
         a.input_layout.offset % 16 == 0 && s.kernel <= 16 && s.stride <= 8 && s.pad <= 16 &&
         s.pad - (s.kernel - 1) >= -128;
}

// The direct 3x3 kernels: 32 bytes of K per tap (17 to 32 input channels), the tile's stride,
// at most its channels.
bool halo_fits(const ConvInt8Args& a, int stride, int block_n) {
  const ConvInt8Shape& s = a.shape;
  return s.kernel == 3 && s.stride == stride && round_up(s.in_channels, 16) == 32 &&
         s.out_channels <= block_n;
}

// The heuristic's choice of an im2col variant where one fits; QYOLO_CUDA_IM2COL_TMA=0 keeps
// the cp.async variants (for comparison; explicit tiles are not affected).
bool im2col_preferred() {
  static const bool preferred = [] {
    const char* v = std::getenv("QYOLO_CUDA_IM2COL_TMA");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return preferred;
}

int tile_index(const char* name) {
  for (int t = 0; t < kTileCount; ++t)
    if (std::strcmp(kTiles[t].name, name) == 0) return t;
  return -1;
}

// The heuristic's timing knobs, read from the environment once (docs/cuda_kernels.md): split K
// off (QYOLO_CUDA_SPLIT_K=0), its unit slots an SM (QYOLO_CUDA_SPLIT_UNITS, 1..4) and least K
// steps a part (QYOLO_CUDA_SPLIT_MIN_STEPS, 1..64), and the tile of small windowed
// (QYOLO_CUDA_SMALL_TILE, an mma.sync variant) and pointwise (QYOLO_CUDA_SMALL_POINTWISE_TILE,
// mma.sync or wgmma) convolutions. A malformed value is conv_int8's one-line error; the
// heuristic then keeps its defaults.
struct Knobs {
  bool split_enabled = true;
  int split_units_per_sm = 1;
  int split_min_steps = 6;  // the pipeline's fill and the hand-over cost about that many steps
  int small_tile = -1;      // -1: the heuristic's
  int small_pointwise_tile = -1;
  std::string error;
};

const Knobs& knobs() {
  static const Knobs knobs = [] {
    Knobs k;
    auto fail = [&k](const char* name, const char* value, const char* what) {
      if (k.error.empty()) k.error = std::string(name) + "=" + value + " (" + what + ")";
    };
    auto number = [&](const char* name, int lo, int hi, int& out) {
      const char* v = std::getenv(name);
      if (!v) return;
      char* end = nullptr;
      const long n = std::strtol(v, &end, 10);
      if (end == v || *end != '\0' || n < lo || n > hi)
        return fail(name, v, (std::to_string(lo) + ".." + std::to_string(hi)).c_str());
      out = int(n);
    };
    auto tile = [&](const char* name, bool pointwise, int& out) {
      const char* v = std::getenv(name);
      if (!v) return;
      const int t = tile_index(v);
      const bool ok = t >= 0 && !kTiles[t].s2d && !kTiles[t].stem && !kTiles[t].halo_stride &&
                      !kTiles[t].im2col && (pointwise || !kTiles[t].wgmma);
      if (!ok)
        return fail(name, v, pointwise ? "no mma.sync or wgmma tile variant"
                                       : "no mma.sync tile variant");
      out = t;
    };
    int split = 1;
    number("QYOLO_CUDA_SPLIT_K", 0, 1, split);
    k.split_enabled = split != 0;
    number("QYOLO_CUDA_SPLIT_UNITS", 1, 4, k.split_units_per_sm);
    number("QYOLO_CUDA_SPLIT_MIN_STEPS", 1, 64, k.split_min_steps);
    tile("QYOLO_CUDA_SMALL_TILE", false, k.small_tile);
    tile("QYOLO_CUDA_SMALL_POINTWISE_TILE", true, k.small_pointwise_tile);
    return k;
  }();
  return knobs;
}

}  // namespace

int conv_int8_tile_count() { return kTileCount; }

const char* conv_int8_tile_name(int tile) {
  return tile >= 0 && tile < kTileCount ? kTiles[tile].name : "invalid";
}

bool conv_int8_tile_supports(int tile, const ConvInt8Args& args) {
  if (tile < 0 || tile >= kTileCount) return false;
  if (kTiles[tile].wgmma && !device_traits().wgmma) return false;
  const bool s2d =
      conv_int8_weight_format(args.shape, args.input_layout) == ConvWeightFormat::kHwc4S2d;
  if (kTiles[tile].s2d != s2d) return false;
  if (kTiles[tile].stem && (args.shape.kernel != 6 || args.shape.out_channels > kTiles[tile].block_n))
    return false;
  if (kTiles[tile].halo_stride && !halo_fits(args, kTiles[tile].halo_stride, kTiles[tile].block_n))
    return false;
  return !kTiles[tile].im2col || im2col_fits(args);
}

// Rules read off measured times of every variant on every yolov5s layer at batch 1, 32 and 64
// on an H200 (bench/cuda_conv --all-tiles): wgmma pays wherever there is enough work for the SMs;
// pointwise layers (whose A and B tiles come by TMA) want the 4-stage 128x64 / 128x32 tiles,
// which fit three blocks per SM, except the detect head's 255 channels (the 128x128 tile wastes
// less of it); 3x3 layers want 128x128 from 128 channels up; small problems (batch 1) want the
// smallest tiles that keep every SM busy.
int conv_int8_pick_tile(const ConvInt8Args& args) {
  const DeviceTraits device = device_traits();
  const ConvInt8Shape& s = args.shape;
  const int64_t pixels = s.out_pixels();
  const int cout = s.out_channels;
  const bool pointwise = s.kernel == 1 && s.stride == 1 && s.pad == 0;
  const int64_t tiles_128 = ((pixels + 127) / 128) * ((cout + 127) / 128);
  const bool small = tiles_128 < device.sms;
  // Enough 128-pixel tiles for several waves of the direct kernels' blocks: below that (yolov5s's
  // first layers at batch 1) their 4 x 32 tiles leave SMs short of work.
  const bool many = pixels / 128 >= 8 * int64_t{device.sms};
  const char* name;
  if (conv_int8_weight_format(s, args.input_layout) == ConvWeightFormat::kHwc4S2d) {
    // The stem (6x6/2): the direct kernel, which copies each input patch once.
    if (s.kernel == 6 && cout <= 32) name = many ? "stem_s2d_4x32_n32" : "stem_s2d_4x16_n32";
    else if (s.kernel == 6 && cout <= 64) name = "stem_s2d_4x16_n64";
    else name = cout <= 32 ? "mma_s2d_128x32_w4x1_s4" : "mma_s2d_128x64_w2x2_s4";
  } else if (many && s.kernel == 3 && (s.stride == 1 || s.stride == 2) &&
             round_up(s.in_channels, 16) == 32 && cout <= 64) {
    // 3x3 layers of 32-channel inputs: the direct kernel, which copies each input patch once
    // (at batch 1 the implicit-GEMM tiles below were faster).
    name = s.stride == 1 ? (cout <= 32 ? "halo3x3_s1_4x32_n32" : "halo3x3_s1_4x32_n64")
                         : (cout <= 32 ? "halo3x3_s2_4x32_n32" : "halo3x3_s2_4x32_n64");
  } else if (device.wgmma) {
    // Small windowed layers (batch 1's): the 64 x 64 mma.sync tile with 8 warps (16 x 32 each),
    // split K where its tiles leave SMs idle; against 4 warps (32 x 32 each) yolov5s batch 1
    // 0.440 -> 0.420 ms, yolov5n 0.373 -> 0.349 ms on an H200 (twice as many warps to hide
    // each K step's latency: one block an SM at these sizes).
    if (small && (pointwise ? knobs().small_pointwise_tile : knobs().small_tile) >= 0)
      return pointwise ? knobs().small_pointwise_tile : knobs().small_tile;
    if (small) name = pointwise ? "wgmma_128x32_s4" : "mma_64x64_w4x2_s4";
    else if (cout <= 32) name = pointwise ? "wgmma_128x32_s4" : "mma_128x32_w4x1_s4";
    else if (cout <= 64) name = "wgmma_128x64_s4";
    else if (pointwise) name = cout % 64 == 0 ? "wgmma_128x64_s4" : "wgmma_128x128_s5";
    else name = "wgmma_128x128_s5";
    // The same tile with A by the copy engine's im2col mode, where it fits.
    if (!pointwise && std::strncmp(name, "wgmma_", 6) == 0 && im2col_preferred() &&
        im2col_fits(args)) {
      const std::string im2col = std::string("wgmma_im2col_") + (name + 6);
      if (const int t = tile_index(im2col.c_str()); t >= 0) return t;
    }
  } else {
    if (small) name = "mma_64x64_w2x2_s4";
    else if (cout <= 32) name = pointwise ? "mma_128x32_w4x1_s4" : "mma_256x32_w8x1_s4";
    else if (cout <= 64) name = pointwise ? "mma_64x64_w2x2_s4" : "mma_128x64_w2x2_s4";
    else name = "mma_128x64_w2x2_s4";
  }
  return tile_index(name);
}

namespace {

bool mma_tile(int tile) {
  const TileInfo& t = kTiles[tile];
  return !t.wgmma && !t.stem && !t.halo_stride;
}

int k_steps(const ConvInt8Args& args) {
  const ConvWeightFormat format = conv_int8_weight_format(args.shape, args.input_layout);
  return (conv_int8_packed_k(args.shape, format) + 63) / 64;
}

int64_t output_tiles(const ConvInt8Args& args, int tile) {
  const int64_t bm = kTiles[tile].block_m, bn = kTiles[tile].block_n;
  return (args.shape.out_pixels() + bm - 1) / bm * ((args.shape.out_channels + bn - 1) / bn);
}

// Split K's workspace: an int counter per output tile, padded to 256 bytes, then the int32
// partials, a block_m x block_n tile per unit.
size_t split_counter_bytes(int64_t tiles) { return (size_t(tiles) * 4 + 255) / 256 * 256; }

// The heuristic's splits go to tiles of 64 x 64 outputs at most.
constexpr int kSplitMaxTile = 64 * 64;
constexpr int kSplitMax = 8;

}  // namespace

// Split where the tiles fill at most half the unit slots (one an SM by default): as many parts
// as the slots hold, at most 8, each of at least min_steps K steps.
int conv_int8_pick_split(const ConvInt8Args& args, int tile) {
  if (tile < 0 || tile >= kTileCount || !mma_tile(tile) || !knobs().split_enabled) return 1;
  if (kTiles[tile].block_m * kTiles[tile].block_n > kSplitMaxTile) return 1;
  const int64_t slots = int64_t{device_traits().sms} * knobs().split_units_per_sm;
  const int64_t tiles = output_tiles(args, tile);
  if (tiles * 2 > slots) return 1;
  const int64_t split =
      std::min<int64_t>({slots / tiles, k_steps(args) / knobs().split_min_steps, kSplitMax});
  return split >= 2 ? int(split) : 1;
}

size_t conv_int8_split_workspace_bytes(const ConvInt8Args& args, int tile, int split) {
  if (tile < 0 || tile >= kTileCount || split <= 1) return 0;
  const int64_t tiles = output_tiles(args, tile);
  return split_counter_bytes(tiles) +
         size_t(tiles) * size_t(split) * size_t(kTiles[tile].block_m) * size_t(kTiles[tile].block_n) * 4;
}

size_t conv_int8_split_workspace_bytes() {
  // tiles * split <= slots, tiles <= slots / 2, tiles of at most kSplitMaxTile outputs.
  const size_t slots = size_t(device_traits().sms) * knobs().split_units_per_sm;
  return split_counter_bytes(int64_t(slots)) + slots * kSplitMaxTile * 4;
}

Expected<int> conv_int8_autotune(const ConvInt8Args& args, cudaStream_t stream, int repeats) {
  QYOLO_ASSIGN_OR_RETURN(Event start, Event::create());
  QYOLO_ASSIGN_OR_RETURN(Event end, Event::create());
  int best = -1;
  float best_ms = std::numeric_limits<float>::max();
  ConvInt8Args a = args;
  for (int t = 0; t < kTileCount; ++t) {
    if (!conv_int8_tile_supports(t, a)) continue;
    a.tile = t;
    QYOLO_RETURN_IF_ERROR(conv_int8(a, stream));  // warm-up: module load, occupancy query
    QYOLO_RETURN_IF_ERROR(start.record(stream));
    for (int r = 0; r < repeats; ++r) QYOLO_RETURN_IF_ERROR(conv_int8(a, stream));
    QYOLO_RETURN_IF_ERROR(end.record(stream));
    QYOLO_RETURN_IF_ERROR(end.synchronize());
    QYOLO_ASSIGN_OR_RETURN(float ms, Event::elapsed_ms(start, end));
    if (ms < best_ms) best_ms = ms, best = t;
  }
  if (best < 0) return unsupported("conv_int8_autotune: no tile variant can run this convolution");
  return best;
}

Status conv_int8(const ConvInt8Args& a, cudaStream_t stream) {
  const ConvInt8Shape& s = a.shape;
  const ConvInt8Epilogue& e = a.epilogue;
  QYOLO_RETURN_IF_ERROR(check_conv_int8(s, a.input_layout, a.output_layout, e));
  if (!a.input || !a.weights || !a.output) return invalid_argument("conv_int8: null pointer");
  const ConvWeightFormat format = conv_int8_weight_format(s, a.input_layout);
  if (format == ConvWeightFormat::kOhwi16 &&
      (a.input_layout.stride % 16 != 0 || a.input_layout.offset % 16 != 0))
    return invalid_argument("conv_int8: input pixel stride ", a.input_layout.stride,
                            " and channel offset ", a.input_layout.offset,
                            " must be multiples of 16 (or an int8:hwc4 input of stride 4 to a stride-2 "
                            "convolution with even kernel and padding)");
  if (!aligned16(a.input) || !aligned16(a.weights))
    return invalid_argument("conv_int8: input and weights must be 16-byte aligned");
  if (a.output_block != 0 &&
      (a.output_block != 32 || e.output != ConvOutput::kInt8 ||
       round_up(s.out_channels, 16) != round_up(s.out_channels, 32) || !aligned16(a.output)))
    return invalid_argument("conv_int8: output_block ", a.output_block,
                            " needs 32, int8 output, a 16-byte aligned output and channels whose "
                            "last 16 reach the block's end (", s.out_channels, " channels)");
  const int64_t pixels = s.out_pixels();
  if (pixels > std::numeric_limits<int>::max() / 2)
    return invalid_argument("conv_int8: ", pixels, " output pixels is too many for one launch");

  const int tile = a.tile < 0 ? conv_int8_pick_tile(a) : a.tile;
  if (!conv_int8_tile_supports(tile, a))
    return invalid_argument("conv_int8: tile ", a.tile, " (", conv_int8_tile_name(a.tile),
                            ") cannot run this convolution (",
                            format == ConvWeightFormat::kHwc4S2d ? "hwc4 space-to-depth" : "ohwi16",
                            " weights", tile >= 0 && tile < kTileCount && kTiles[tile].wgmma ? ", or no sm_90a device" : "",
                            ")");

  // Split K: the caller's, or the heuristic's where the workspace holds it.
  if (a.split_k < 0)
    return invalid_argument("conv_int8: split_k ", a.split_k, " (0: the heuristic's, 1: none, n > 1)");
  if (!knobs().error.empty()) return invalid_argument("conv_int8: ", knobs().error);
  int split = 1;
  if (a.split_k > 1) {
    if (!mma_tile(tile))
      return invalid_argument("conv_int8: split_k ", a.split_k, " needs an mma.sync tile, not ",
                              kTiles[tile].name);
    split = std::min(a.split_k, k_steps(a));
    const size_t need = conv_int8_split_workspace_bytes(a, tile, split);
    if (split > 1 && (!a.workspace || a.workspace_bytes < need || !aligned16(a.workspace)))
      return invalid_argument("conv_int8: split_k ", split, " needs a 16-byte aligned workspace of ",
                              need, " bytes (", a.workspace ? a.workspace_bytes : 0, " given)");
  } else if (a.split_k == 0 && a.workspace && aligned16(a.workspace)) {
    split = conv_int8_pick_split(a, tile);
    if (conv_int8_split_workspace_bytes(a, tile, split) > a.workspace_bytes) split = 1;
  }

  const size_t out_element = e.output == ConvOutput::kInt8 ? 1 : e.output == ConvOutput::kFloat16 ? 2 : 4;
  ConvInt8Params p{};
  p.input = a.input + a.input_layout.offset;
  p.weights = a.weights;
  p.weight_scales = e.weight_scales;
  p.bias = e.bias;
  p.residual = e.residual && e.output != ConvOutput::kInt32Accumulator
                   ? e.residual + e.residual_layout.offset
                   : nullptr;
  p.output = static_cast<char*>(a.output) + a.output_layout.offset * out_element;
  p.in_h = s.in_h, p.in_w = s.in_w, p.out_h = s.out_h(), p.out_w = s.out_w();
  p.in_stride = a.input_layout.stride;
  if (format == ConvWeightFormat::kHwc4S2d) {
    // The 3x3/1 view of a 6x6/2 convolution: taps and padding in units of 2x2 pixels.
    p.kernel = s.kernel / 2, p.stride = 1, p.pad = s.pad / 2;
    p.taps_channels = 16;
  } else {
    p.kernel = s.kernel, p.stride = s.stride, p.pad = s.pad;
    p.taps_channels = round_up(s.in_channels, 16);
  }
  p.k_total = conv_int8_packed_k(s, format);
  p.cout = s.out_channels;
  p.pixels = int(pixels);
  p.div_out_hw = FastDivmod(p.out_h * p.out_w);
  p.div_out_w = FastDivmod(p.out_w);
  p.div_n_tiles = FastDivmod((s.out_channels + kTiles[tile].block_n - 1) / kTiles[tile].block_n);
  p.out_stride = a.output_layout.stride;
  p.residual_stride = p.residual ? e.residual_layout.stride : 0;
  p.input_scale = e.input_scale;
  p.residual_scale = e.residual_scale;
  p.output_scale = e.output_scale;
  p.inv_output_scale = 1.0f / e.output_scale;
  p.conv_scale = e.conv_scale;
  p.inv_conv_scale = e.conv_scale > 0.0f ? 1.0f / e.conv_scale : 0.0f;
  p.silu = e.silu ? 1 : 0;
  p.output_kind = e.output == ConvOutput::kInt8      ? kOutInt8
                  : e.output == ConvOutput::kFloat16 ? kOutFloat16
                                                     : kOutInt32;
  // 16-byte stores need every row start aligned; the residual is read 16 (int8 output) or
  // 8 (float16 output) channels at a time.
  const int vec = output_vector(e.output);
  bool vector_io = aligned16(p.output) && a.output_layout.stride % vec == 0;
  if (p.residual)
    vector_io = vector_io && reinterpret_cast<uintptr_t>(p.residual) % vec == 0 &&
                e.residual_layout.stride % vec == 0;
  if (a.output_block) {  // the blocked layout: every 16 channels one aligned 16-byte run
    p.output = a.output;
    p.out_stride = 0;
    vector_io = p.residual ? reinterpret_cast<uintptr_t>(p.residual) % vec == 0 &&
                                 e.residual_layout.stride % vec == 0
                           : true;
  }
  p.vector_io = vector_io ? 1 : 0;
  p.out_block = a.output_block;
  p.out_blocks = a.output_block ? (s.out_channels + a.output_block - 1) / a.output_block : 0;
  p.out_hw = p.out_h * p.out_w;
  p.split_k = split;
  if (split > 1) {
    p.split_counters = static_cast<int*>(a.workspace);
    p.split_partials = reinterpret_cast<int4*>(static_cast<char*>(a.workspace) +
                                               split_counter_bytes(output_tiles(a, tile)));
  }

  return check(kTiles[tile].launch(p, stream), kTiles[tile].name);
}

}  // namespace qyolo::cuda
