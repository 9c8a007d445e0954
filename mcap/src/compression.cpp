#include "flowbus/mcap/compression.hpp"

#include <lz4frame.h>
#include <zstd.h>

#include "flowbus/mcap/error.hpp"

namespace flowbus::mcap {

const char* compression_name(Compression c) noexcept {
  switch (c) {
    case Compression::Zstd:
      return "zstd";
    case Compression::Lz4:
      return "lz4";
    case Compression::None:
      break;
  }
  return "";
}

Compression parse_compression(std::string_view text) {
  if (text == "zstd") return Compression::Zstd;
  if (text == "lz4") return Compression::Lz4;
  if (text == "none" || text.empty()) return Compression::None;
  throw McapError("unknown compression '" + std::string(text) + "': zstd, lz4 or none");
}

struct Compressor::State {
  ZSTD_CCtx* zstd = nullptr;
  ~State() {
    if (zstd) ZSTD_freeCCtx(zstd);
  }
};

Compressor::Compressor(Compression c) : kind_(c), state_(std::make_unique<State>()) {
  if (c == Compression::Zstd) {
    state_->zstd = ZSTD_createCCtx();
    if (!state_->zstd) throw McapError("zstd: cannot create a compression context");
    // Level 1: the fastest of the standard levels; a recorder must keep up
    // with the bus, and chunks of events compress well at any level.
    ZSTD_CCtx_setParameter(state_->zstd, ZSTD_c_compressionLevel, 1);
    ZSTD_CCtx_setParameter(state_->zstd, ZSTD_c_contentSizeFlag, 1);
  }
}

Compressor::~Compressor() = default;

void Compressor::compress(std::span<const uint8_t> in, std::vector<uint8_t>& out) {
  switch (kind_) {
    case Compression::None:
      out.assign(in.begin(), in.end());
      return;
    case Compression::Zstd: {
      out.resize(ZSTD_compressBound(in.size()));
      const size_t n = ZSTD_compress2(state_->zstd, out.data(), out.size(), in.data(), in.size());
      if (ZSTD_isError(n)) throw McapError(std::string("zstd: ") + ZSTD_getErrorName(n));
      out.resize(n);
      return;
    }
    case Compression::Lz4: {
      LZ4F_preferences_t prefs = LZ4F_INIT_PREFERENCES;
      prefs.frameInfo.contentSize = in.size();
      prefs.frameInfo.blockSizeID = LZ4F_max4MB;
      out.resize(LZ4F_compressFrameBound(in.size(), &prefs));
      const size_t n = LZ4F_compressFrame(out.data(), out.size(), in.data(), in.size(), &prefs);
      if (LZ4F_isError(n)) throw McapError(std::string("lz4: ") + LZ4F_getErrorName(n));
      out.resize(n);
      return;
    }
  }
}

void decompress(std::string_view name, std::span<const uint8_t> in, uint64_t size, std::vector<uint8_t>& out) {
  if (size > (uint64_t(1) << 36))
    throw McapError("chunk claims " + std::to_string(size) + " uncompressed bytes: not believable");
  if (name.empty()) {
    if (in.size() != size)
      throw McapError("uncompressed chunk holds " + std::to_string(in.size()) + " bytes, its header says " +
                      std::to_string(size));
    out.assign(in.begin(), in.end());
    return;
  }
  out.resize(size);
  if (name == "zstd") {
    const size_t n = ZSTD_decompress(out.data(), out.size(), in.data(), in.size());
    if (ZSTD_isError(n)) throw McapError(std::string("zstd chunk does not decompress: ") + ZSTD_getErrorName(n));
    if (n != size)
      throw McapError("zstd chunk decompresses to " + std::to_string(n) + " bytes, its header says " +
                      std::to_string(size));
    return;
  }
  if (name == "lz4") {
    LZ4F_dctx* d = nullptr;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&d, LZ4F_VERSION)))
      throw McapError("lz4: cannot create a decompression context");
    size_t produced = 0, consumed = 0, hint = 1;
    while (hint != 0 && consumed < in.size()) {
      size_t dst = out.size() - produced, src = in.size() - consumed;
      hint = LZ4F_decompress(d, out.data() + produced, &dst, in.data() + consumed, &src, nullptr);
      if (LZ4F_isError(hint)) {
        const std::string why = LZ4F_getErrorName(hint);
        LZ4F_freeDecompressionContext(d);
        throw McapError("lz4 chunk does not decompress: " + why);
      }
      produced += dst;
      consumed += src;
      if (dst == 0 && src == 0) break;
    }
    LZ4F_freeDecompressionContext(d);
    if (hint != 0 || produced != size)
      throw McapError("lz4 chunk ends early: " + std::to_string(produced) + " of " + std::to_string(size) + " bytes");
    return;
  }
  throw McapError("chunk compressed with '" + std::string(name) +
                  "', which this reader does not know (zstd, lz4 or none)");
}

}  // namespace flowbus::mcap
