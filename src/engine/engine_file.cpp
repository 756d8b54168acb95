// The engine file format (docs/engine_format.md) and the engine's structural checks.
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>

#include "qyolo/engine.h"

namespace qyolo {

std::string target_name(EngineTarget target) {
  switch (target) {
    case EngineTarget::kCpu:
      return "cpu";
    case EngineTarget::kCuda:
      return "cuda";
  }
  return str_cat("unknown(", uint32_t(target), ")");
}

Expected<EngineTarget> parse_target(const std::string& text) {
  if (text == "cpu") return EngineTarget::kCpu;
  if (text == "cuda") return EngineTarget::kCuda;
  return invalid_argument("unknown target '", text, "' (cpu or cuda)");
}

std::string element_type_name(ElementType type) {
  switch (type) {
    case ElementType::kInt8:
      return "int8";
    case ElementType::kFloat16:
      return "fp16";
    case ElementType::kFloat32:
      return "fp32";
  }
  return str_cat("unknown(", uint32_t(type), ")");
}

size_t element_size(ElementType type) {
  switch (type) {
    case ElementType::kInt8:
      return 1;
    case ElementType::kFloat16:
      return 2;
    case ElementType::kFloat32:
      return 4;
  }
  return 0;
}

std::string io_format_name(IoFormat format) {
  switch (format) {
    case IoFormat::kFp32Chw:
      return "fp32:chw";
    case IoFormat::kFp16Chw16:
      return "fp16:chw16";
    case IoFormat::kInt8Chw32:
      return "int8:chw32";
    case IoFormat::kInt8Hwc4:
      return "int8:hwc4";
  }
  return str_cat("unknown(", uint32_t(format), ")");
}

Expected<IoFormat> parse_io_format(const std::string& text) {
  if (text == "fp32:chw" || text == "fp32:linear") return IoFormat::kFp32Chw;
  if (text == "fp16:chw16" || text == "fp16:dla_linear_chw16") return IoFormat::kFp16Chw16;
  if (text == "int8:chw32" || text == "int8:dla_chw32") return IoFormat::kInt8Chw32;
  if (text == "int8:hwc4" || text == "int8:dla_hwc4") return IoFormat::kInt8Hwc4;
  return invalid_argument("unknown I/O format '", text,
                          "' (int8:hwc4, fp16:chw16, int8:chw32 or fp32:chw)");
}

std::string layer_kind_name(LayerKind kind) {
  switch (kind) {
    case LayerKind::kConv:
      return "Conv";
    case LayerKind::kMaxPool:
      return "MaxPool";
    case LayerKind::kResizeNearest:
      return "Resize";
    case LayerKind::kConvert:
      return "Convert";
    case LayerKind::kAdd:
      return "Add";
    case LayerKind::kMul:
      return "Mul";
    case LayerKind::kSigmoid:
      return "Sigmoid";
    case LayerKind::kInputReformat:
      return "InputReformat";
    case LayerKind::kOutputReformat:
      return "OutputReformat";
  }
  return str_cat("unknown(", uint32_t(kind), ")");
}

int64_t EngineIo::image_bytes() const {
  const int64_t hw = int64_t{height} * width;
  switch (format) {
    case IoFormat::kFp32Chw:
      return int64_t{channels} * hw * 4;
    case IoFormat::kFp16Chw16:
      return int64_t{round_up(channels, 16)} * hw * 2;
    case IoFormat::kInt8Chw32:
      return int64_t{round_up(channels, 32)} * hw;
    case IoFormat::kInt8Hwc4:
      return hw * 4;
  }
  return 0;
}

float layer_round_scale(const Engine& engine, const EngineLayer& layer) {
  return layer.requant_from > 0.0f ? layer.requant_from : engine.tensors[layer.output].scale;
}

FusedCopy fused_copy(const Engine& engine, const EngineLayer& layer) {
  FusedCopy c;
  c.source = layer.output;
  c.target = layer.also_output >= 0 ? layer.also_output : layer.output;
  c.from = layer.also_output >= 0 ? engine.tensors[layer.output].scale : layer.requant_from;
  c.to = engine.tensors[c.target].scale;
  return c;
}

WeightRange Engine::add_weights(const void* data, size_t bytes) {
  WeightRange range;
  range.offset = (weights.size() + 63) / 64 * 64;
  range.bytes = bytes;
  weights.resize(range.offset + bytes, 0);
  if (bytes) std::memcpy(weights.data() + range.offset, data, bytes);
  return range;
}

uint64_t fnv1a64(const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint64_t hash = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < size; ++i) {
    hash ^= p[i];
    hash *= 0x100000001b3ull;
  }
  return hash;
}

Status validate_engine(const Engine& e) {
  const int tensors = int(e.tensors.size());
  if (e.max_batch < 1) return invalid_argument("max batch ", e.max_batch, " is not positive");
  for (const EngineTensor& t : e.tensors) {
    if (element_size(t.type) == 0)
      return invalid_argument("tensor '", t.name, "': unknown element type");
    if (t.buffer < 0 || t.buffer >= int(e.buffers.size()))
      return invalid_argument("tensor '", t.name, "': buffer ", t.buffer, " out of range");
    if (t.channels < 1 || t.height < 1 || t.width < 1 || t.layout.offset < 0 ||
        t.layout.offset + t.channels > t.layout.stride)
      return invalid_argument("tensor '", t.name, "': channels [", t.layout.offset, ", ",
                              t.layout.offset + t.channels, ") do not fit the pixel stride ",
                              t.layout.stride);
    if (uint64_t(t.image_bytes()) > e.buffers[t.buffer].bytes_per_image)
      return invalid_argument("tensor '", t.name, "' is larger than its buffer");
  }
  for (size_t i = 0; i < e.buffers.size(); ++i) {
    const ArenaBuffer& b = e.buffers[i];
    if (b.offset + b.bytes_per_image * e.max_batch > e.arena_bytes())
      return invalid_argument("arena buffer ", i, " ends past the arena");
  }
  auto check_io = [&](const std::vector<EngineIo>& list, const char* what) -> Status {
    for (const EngineIo& io : list) {
      if (io.tensor < 0 || io.tensor >= tensors)
        return invalid_argument(what, " '", io.name, "': tensor ", io.tensor, " out of range");
      if (io.image_bytes() <= 0)
        return invalid_argument(what, " '", io.name, "': bad format or shape");
    }
    return Status::ok();
  };
  QYOLO_RETURN_IF_ERROR(check_io(e.inputs, "input"));
  QYOLO_RETURN_IF_ERROR(check_io(e.outputs, "output"));
  for (const EngineLayer& l : e.layers) {
    const int in_limit = l.kind == LayerKind::kInputReformat ? int(e.inputs.size()) : tensors;
    const int out_limit = l.kind == LayerKind::kOutputReformat ? int(e.outputs.size()) : tensors;
    for (int in : l.inputs)
      if (in < 0 || in >= in_limit)
        return invalid_argument("layer '", l.name, "': input ", in, " out of range");
    if (l.output < 0 || l.output >= out_limit)
      return invalid_argument("layer '", l.name, "': output ", l.output, " out of range");
    if (l.residual >= tensors)
      return invalid_argument("layer '", l.name, "': residual out of range");
    for (const WeightRange* r : {&l.weights, &l.weight_scales, &l.bias, &l.table})
      if (r->offset + r->bytes > e.weights.size() || r->offset % 64 != 0)
        return invalid_argument("layer '", l.name, "': weight range out of bounds");
    if (l.inputs.empty()) return invalid_argument("layer '", l.name, "' has no input");
    // What every backend needs of a layer; a backend's supports_layer adds its own limits.
    switch (l.kind) {
      case LayerKind::kConv:
        if (l.precision != ElementType::kInt8 && l.precision != ElementType::kFloat16)
          return unsupported("layer '", l.name, "': ", element_type_name(l.precision),
                             " convolution");
        break;
      case LayerKind::kAdd:
      case LayerKind::kMul:
        if (l.inputs.size() != 2)
          return invalid_argument("layer '", l.name, "': expected two inputs");
        break;
      case LayerKind::kMaxPool:
      case LayerKind::kResizeNearest:
      case LayerKind::kConvert:
      case LayerKind::kSigmoid:
      case LayerKind::kInputReformat:
      case LayerKind::kOutputReformat:
        break;
      default:
        return unsupported("layer '", l.name, "': unknown kind ", uint32_t(l.kind));
    }
    if (l.also_output >= tensors || l.also_output < -1)
      return invalid_argument("layer '", l.name, "': also_output out of range");
    if (l.requant_from < 0.0f || !std::isfinite(l.requant_from))
      return invalid_argument("layer '", l.name, "': requant_from ", l.requant_from);
    if (l.has_fused_copy()) {
      const bool kind_ok = (l.kind == LayerKind::kConv && l.precision == ElementType::kInt8 &&
                            l.activation != Activation::kSigmoid) ||
                           l.kind == LayerKind::kMaxPool || l.kind == LayerKind::kResizeNearest;
      if (!kind_ok)
        return invalid_argument("layer '", l.name, "': a fused Concat copy on a ", l.op, " layer");
      if (l.requant_from > 0.0f && l.also_output >= 0)
        return invalid_argument("layer '", l.name, "': both requant_from and also_output set");
      if (e.tensors[l.output].type != ElementType::kInt8 ||
          (l.also_output >= 0 && e.tensors[l.also_output].type != ElementType::kInt8))
        return invalid_argument("layer '", l.name, "': a fused Concat copy needs int8 tensors");
      if (l.also_output >= 0) {
        const EngineTensor& a = e.tensors[l.also_output];
        const EngineTensor& o = e.tensors[l.output];
        if (a.channels != o.channels || a.height != o.height || a.width != o.width)
          return invalid_argument("layer '", l.name, "': also_output '", a.name,
                                  "' differs in shape from output '", o.name, "'");
      }
    }
  }
  return Status::ok();
}

namespace {

class Writer {
 public:
  void u32(uint32_t v) { raw(&v, 4); }
  void i32(int32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void f32(float v) { raw(&v, 4); }
  void str(const std::string& s) {
    u32(uint32_t(s.size()));
    raw(s.data(), s.size());
  }
  void range(const WeightRange& r) {
    u64(r.offset);
    u64(r.bytes);
  }
  void raw(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    out.insert(out.end(), b, b + n);
  }
  std::vector<uint8_t> out;
};

// Bounds-checked reads; the first failure sticks and later reads return zeros.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  uint32_t u32() { return get<uint32_t>(); }
  int32_t i32() { return get<int32_t>(); }
  uint64_t u64() { return get<uint64_t>(); }
  float f32() { return get<float>(); }
  std::string str() {
    const uint32_t n = u32();
    if (!take(n)) return {};
    return std::string(reinterpret_cast<const char*>(p_ - n), n);
  }
  WeightRange range() {
    WeightRange r;
    r.offset = u64();
    r.bytes = u64();
    return r;
  }
  // A list count, refused when even one byte per item would not fit.
  uint32_t count() {
    const uint32_t n = u32();
    if (n > size_t(end_ - p_)) failed_ = true;
    return failed_ ? 0 : n;
  }
  bool take(size_t n) {
    if (failed_ || n > size_t(end_ - p_)) {
      failed_ = true;
      return false;
    }
    p_ += n;
    return true;
  }
  const uint8_t* here() const { return p_; }
  bool failed() const { return failed_; }
  bool at_end() const { return p_ == end_; }

 private:
  template <typename T>
  T get() {
    T v{};
    if (take(sizeof(T))) std::memcpy(&v, p_ - sizeof(T), sizeof(T));
    return v;
  }
  const uint8_t* p_;
  const uint8_t* end_;
  bool failed_ = false;
};

constexpr size_t kHeaderBytes = 64;

void write_io(Writer& w, const EngineIo& io) {
  w.str(io.name);
  w.u32(uint32_t(io.format));
  w.i32(io.channels);
  w.i32(io.height);
  w.i32(io.width);
  w.f32(io.scale);
  w.i32(io.tensor);
}

EngineIo read_io(Reader& r) {
  EngineIo io;
  io.name = r.str();
  io.format = IoFormat(r.u32());
  io.channels = r.i32();
  io.height = r.i32();
  io.width = r.i32();
  io.scale = r.f32();
  io.tensor = r.i32();
  return io;
}

}  // namespace

std::vector<uint8_t> serialize_engine(const Engine& e) {
  Writer w;
  w.str(e.source);
  w.i32(e.max_batch);
  w.u64(e.arena_bytes_per_image);
  for (const auto* list : {&e.inputs, &e.outputs}) {
    w.u32(uint32_t(list->size()));
    for (const EngineIo& io : *list) write_io(w, io);
  }
  w.u32(uint32_t(e.tensors.size()));
  for (const EngineTensor& t : e.tensors) {
    w.str(t.name);
    w.u32(uint32_t(t.type));
    w.i32(t.channels);
    w.i32(t.height);
    w.i32(t.width);
    w.f32(t.scale);
    w.i32(t.buffer);
    w.i32(t.layout.stride);
    w.i32(t.layout.offset);
  }
  w.u32(uint32_t(e.buffers.size()));
  for (const ArenaBuffer& b : e.buffers) {
    w.u64(b.offset);
    w.u64(b.bytes_per_image);
    w.i32(b.first_layer);
    w.i32(b.last_layer);
  }
  w.u32(uint32_t(e.layers.size()));
  for (const EngineLayer& l : e.layers) {
    w.str(l.name);
    w.str(l.op);
    w.u32(uint32_t(l.kind));
    w.u32(uint32_t(l.precision));
    w.u32(uint32_t(l.inputs.size()));
    for (int in : l.inputs) w.i32(in);
    w.i32(l.output);
    const ConvInt8Shape& s = l.shape;
    for (int v :
         {s.batch, s.in_channels, s.in_h, s.in_w, s.out_channels, s.kernel, s.stride, s.pad})
      w.i32(v);
    w.u32(uint32_t(l.weight_format));
    w.u32(uint32_t(l.activation));
    for (const WeightRange* r : {&l.weights, &l.weight_scales, &l.bias, &l.table}) w.range(*r);
    w.i32(l.residual);
    w.f32(l.conv_scale);
    w.f32(l.requant_from);
    w.i32(l.also_output);
    for (int v : {l.kernel, l.stride, l.pad, l.factor}) w.i32(v);
  }
  w.u32(uint32_t(e.fallbacks.size()));
  for (const EngineFallback& f : e.fallbacks) {
    w.str(f.layer);
    w.str(f.reason);
  }
  w.u64(e.weights.size());
  w.raw(e.weights.data(), e.weights.size());

  Writer header;
  header.raw(kEngineMagic, 8);
  header.u32(kEngineFormatVersion);
  header.u32(uint32_t(e.target));
  char version[16] = {};
  std::strncpy(version, e.qyolo_version.c_str(), sizeof(version) - 1);
  header.raw(version, 16);
  header.u64(w.out.size());
  header.u64(fnv1a64(w.out.data(), w.out.size()));
  header.u32(kHeaderBytes);
  const uint8_t reserved[12] = {};
  header.raw(reserved, 12);
  header.raw(w.out.data(), w.out.size());
  return std::move(header.out);
}

Expected<Engine> deserialize_engine(const void* data, size_t size, const std::string& source,
                                    const EngineTarget* expected_target) {
  auto fail = [&](const auto&... args) { return invalid_argument(source, ": ", args...); };
  const auto* bytes = static_cast<const uint8_t*>(data);
  if (size < kHeaderBytes)
    return fail("truncated: ", size, " bytes, the header alone is ", kHeaderBytes);
  if (std::memcmp(bytes, kEngineMagic, 8) != 0) {
    std::string magic(reinterpret_cast<const char*>(bytes), 8);
    for (char& c : magic)
      if (c < 32 || c > 126) c = '?';
    return fail("not a qyolo engine (magic '", magic, "', expected 'QYOLOENG')");
  }
  Reader h(bytes + 8, kHeaderBytes - 8);
  const uint32_t version = h.u32();
  if (version != kEngineFormatVersion)
    return fail("format version ", version, ", this qyolo reads ", kEngineFormatVersion);
  Engine e;
  e.target = EngineTarget(h.u32());
  char builder[17] = {};
  std::memcpy(builder, h.here(), 16);
  (void)h.take(16);
  e.qyolo_version = builder;
  const uint64_t payload_bytes = h.u64(), checksum = h.u64();
  if (e.target != EngineTarget::kCpu && e.target != EngineTarget::kCuda)
    return fail("unknown target ", uint32_t(e.target));
  if (expected_target && *expected_target != e.target)
    return fail("built for target ", target_name(e.target), ", this device is ",
                target_name(*expected_target));
  if (payload_bytes != size - kHeaderBytes)
    return fail("truncated: payload of ", payload_bytes, " bytes, ", size - kHeaderBytes,
                " present");
  const uint8_t* payload = bytes + kHeaderBytes;
  if (fnv1a64(payload, payload_bytes) != checksum)
    return fail("checksum mismatch (the file is damaged)");

  Reader r(payload, payload_bytes);
  e.source = r.str();
  e.max_batch = r.i32();
  e.arena_bytes_per_image = r.u64();
  for (auto* list : {&e.inputs, &e.outputs}) {
    const uint32_t n = r.count();
    for (uint32_t i = 0; i < n; ++i) list->push_back(read_io(r));
  }
  for (uint32_t n = r.count(), i = 0; i < n; ++i) {
    EngineTensor t;
    t.name = r.str();
    t.type = ElementType(r.u32());
    t.channels = r.i32();
    t.height = r.i32();
    t.width = r.i32();
    t.scale = r.f32();
    t.buffer = r.i32();
    t.layout.stride = r.i32();
    t.layout.offset = r.i32();
    e.tensors.push_back(std::move(t));
  }
  for (uint32_t n = r.count(), i = 0; i < n; ++i) {
    ArenaBuffer b;
    b.offset = r.u64();
    b.bytes_per_image = r.u64();
    b.first_layer = r.i32();
    b.last_layer = r.i32();
    e.buffers.push_back(b);
  }
  for (uint32_t n = r.count(), i = 0; i < n; ++i) {
    EngineLayer l;
    l.name = r.str();
    l.op = r.str();
    l.kind = LayerKind(r.u32());
    l.precision = ElementType(r.u32());
    for (uint32_t k = 0, m = r.count(); k < m; ++k) l.inputs.push_back(r.i32());
    l.output = r.i32();
    ConvInt8Shape& s = l.shape;
    for (int* v : {&s.batch, &s.in_channels, &s.in_h, &s.in_w, &s.out_channels, &s.kernel,
                   &s.stride, &s.pad})
      *v = r.i32();
    l.weight_format = ConvWeightFormat(r.u32());
    l.activation = Activation(r.u32());
    for (WeightRange* w : {&l.weights, &l.weight_scales, &l.bias, &l.table}) *w = r.range();
    l.residual = r.i32();
    l.conv_scale = r.f32();
    l.requant_from = r.f32();
    l.also_output = r.i32();
    for (int* v : {&l.kernel, &l.stride, &l.pad, &l.factor}) *v = r.i32();
    e.layers.push_back(std::move(l));
  }
  for (uint32_t n = r.count(), i = 0; i < n; ++i) {
    EngineFallback f;
    f.layer = r.str();
    f.reason = r.str();
    e.fallbacks.push_back(std::move(f));
  }
  const uint64_t weight_bytes = r.u64();
  const uint8_t* w = r.here();
  if (!r.take(weight_bytes) || r.failed()) return fail("payload ends in the middle of a field");
  e.weights.assign(w, w + weight_bytes);
  if (!r.at_end()) return fail("payload has trailing bytes");
  Status valid = validate_engine(e);
  if (!valid.is_ok()) return fail(valid.message());
  return e;
}

Status save_engine(const Engine& engine, const std::string& path) {
  const std::vector<uint8_t> bytes = serialize_engine(engine);
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  if (!out) return io_error(path, ": cannot write the engine");
  return Status::ok();
}

Expected<Engine> load_engine(const std::string& path, const EngineTarget* expected_target) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return io_error(path, ": cannot open");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  return deserialize_engine(bytes.data(), bytes.size(), path, expected_target);
}

}  // namespace qyolo
