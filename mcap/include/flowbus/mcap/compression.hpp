// Chunk compression: zstd (libzstd) and lz4 frames (liblz4), the two formats
// MCAP's registry names, or none.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace flowbus::mcap {

enum class Compression { None, Zstd, Lz4 };

/// "zstd", "lz4" or "" (MCAP's names; "" is no compression).
const char* compression_name(Compression c) noexcept;
/// "zstd", "lz4", "none" -> Compression; throws McapError for anything else.
Compression parse_compression(std::string_view text);

/// Compresses chunk records; keeps its compression context between chunks.
class Compressor {
 public:
  explicit Compressor(Compression c);
  ~Compressor();
  Compressor(const Compressor&) = delete;
  Compressor& operator=(const Compressor&) = delete;
  /// Replaces `out` with `in` compressed (a copy for None). Throws McapError.
  void compress(std::span<const uint8_t> in, std::vector<uint8_t>& out);
  Compression kind() const noexcept { return kind_; }

 private:
  Compression kind_;
  struct State;
  std::unique_ptr<State> state_;
};

/// Decompresses a chunk's records named by MCAP `name` ("", "zstd", "lz4")
/// into exactly `uncompressed_size` bytes. Throws McapError when the name is
/// unknown, the data is damaged or its size is not the one announced.
void decompress(std::string_view name, std::span<const uint8_t> in, uint64_t uncompressed_size,
                std::vector<uint8_t>& out);

}  // namespace flowbus::mcap
