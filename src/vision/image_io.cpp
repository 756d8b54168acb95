// JPEG (libjpeg-turbo's TurboJPEG API) and PNG (libpng) decoding to RGB, and encoding.
#include <png.h>
#include <turbojpeg.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>

#include "qyolo/vision.h"

namespace qyolo {
namespace {

Expected<std::string> read_bytes(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return io_error("cannot open ", path, ": ", std::strerror(errno));
  std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (bytes.empty()) return invalid_argument(path, ": empty file, not an image");
  return bytes;
}

Expected<Image> decode_jpeg(const std::string& bytes, const std::string& path) {
  std::unique_ptr<void, int (*)(tjhandle)> handle(tjInitDecompress(), tjDestroy);
  if (!handle) return internal_error("cannot start the JPEG decoder");
  int width = 0, height = 0, subsampling = 0, colorspace = 0;
  const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
  if (tjDecompressHeader3(handle.get(), data, bytes.size(), &width, &height, &subsampling,
                          &colorspace) != 0) {
    return invalid_argument(path, ": corrupt JPEG (", tjGetErrorStr2(handle.get()), ")");
  }
  Image image;
  image.width = width;
  image.height = height;
  image.pixels.resize(static_cast<size_t>(width) * height * 3);
  // Default flags: accurate integer DCT and fancy upsampling, as OpenCV's imread decodes.
  if (tjDecompress2(handle.get(), data, bytes.size(), image.pixels.data(), width, 0, height,
                    TJPF_RGB, 0) != 0 &&
      tjGetErrorCode(handle.get()) == TJERR_FATAL) {
    return invalid_argument(path, ": corrupt JPEG (", tjGetErrorStr2(handle.get()), ")");
  }
  return image;
}

struct PngReader {
  const std::string* bytes;
  size_t offset;
};

Expected<Image> decode_png(const std::string& bytes, const std::string& path) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  if (!png) return internal_error("cannot start the PNG decoder");
  png_infop info = png_create_info_struct(png);
  Image image;
  PngReader reader{&bytes, 0};
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    return invalid_argument(path, ": corrupt PNG");
  }
  png_set_read_fn(png, &reader, [](png_structp p, png_bytep out, png_size_t n) {
    auto* r = static_cast<PngReader*>(png_get_io_ptr(p));
    if (r->offset + n > r->bytes->size()) png_error(p, "truncated");
    std::memcpy(out, r->bytes->data() + r->offset, n);
    r->offset += n;
  });
  png_read_info(png, info);
  const png_uint_32 width = png_get_image_width(png, info);
  const png_uint_32 height = png_get_image_height(png, info);
  const int color = png_get_color_type(png, info);
  // Normalise every PNG flavour to 8-bit RGB.
  if (png_get_bit_depth(png, info) == 16) png_set_strip_16(png);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && png_get_bit_depth(png, info) < 8) {
    png_set_expand_gray_1_2_4_to_8(png);
  }
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
  if (color & PNG_COLOR_MASK_ALPHA || png_get_valid(png, info, PNG_INFO_tRNS)) {
    png_set_strip_alpha(png);
  }
  png_read_update_info(png, info);
  image.width = static_cast<int>(width);
  image.height = static_cast<int>(height);
  image.pixels.resize(static_cast<size_t>(width) * height * 3);
  std::vector<png_bytep> rows(height);
  for (png_uint_32 y = 0; y < height; ++y) rows[y] = image.row(static_cast<int>(y));
  png_read_image(png, rows.data());
  png_destroy_read_struct(&png, &info, nullptr);
  return image;
}

Status encode_png(const Image& image, const std::string& path) {
  FILE* file = std::fopen(path.c_str(), "wb");
  if (!file) return io_error("cannot write ", path, ": ", std::strerror(errno));
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::fclose(file);
    return io_error("cannot write ", path);
  }
  png_init_io(png, file);
  png_set_IHDR(png, info, image.width, image.height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < image.height; ++y) png_write_row(png, image.row(y));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  std::fclose(file);
  return Status::ok();
}

Status encode_jpeg(const Image& image, const std::string& path) {
  std::unique_ptr<void, int (*)(tjhandle)> handle(tjInitCompress(), tjDestroy);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  if (tjCompress2(handle.get(), image.pixels.data(), image.width, 0, image.height, TJPF_RGB,
                  &buffer, &size, TJSAMP_420, 90, 0) != 0) {
    return internal_error("JPEG encoding of ", path, " failed: ", tjGetErrorStr2(handle.get()));
  }
  std::unique_ptr<unsigned char, void (*)(unsigned char*)> owned(buffer, tjFree);
  std::ofstream out(path, std::ios::binary);
  if (!out) return io_error("cannot write ", path, ": ", std::strerror(errno));
  out.write(reinterpret_cast<const char*>(buffer), static_cast<std::streamsize>(size));
  return out ? Status::ok() : io_error("cannot write ", path);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  if (s.size() < suffix.size()) return false;
  std::string tail = s.substr(s.size() - suffix.size());
  for (char& c : tail) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return tail == suffix;
}

}  // namespace

Expected<Image> read_image(const std::string& path) {
  QYOLO_ASSIGN_OR_RETURN(std::string bytes, read_bytes(path));
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  if (bytes.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) {
    return decode_jpeg(bytes, path);
  }
  if (bytes.size() >= 8 && std::memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0) {
    return decode_png(bytes, path);
  }
  return unsupported(path, ": not a JPEG or PNG image");
}

Status write_image(const Image& image, const std::string& path) {
  if (ends_with(path, ".png")) return encode_png(image, path);
  if (ends_with(path, ".jpg") || ends_with(path, ".jpeg")) return encode_jpeg(image, path);
  return invalid_argument(path, ": unknown image extension (use .jpg or .png)");
}

}  // namespace qyolo
