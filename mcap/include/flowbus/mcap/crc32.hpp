// CRC-32 as MCAP uses it (IEEE 802.3, reflected, polynomial 0xEDB88320: the
// zlib/PNG CRC), slicing by eight bytes, incremental.
#pragma once

#include <cstddef>
#include <cstdint>

namespace flowbus::mcap {

/// The CRC of `size` bytes at `data` continued from `crc` (0 to start):
/// crc32(crc32(0, a), b) == crc32 of a followed by b.
uint32_t crc32(uint32_t crc, const void* data, size_t size) noexcept;

}  // namespace flowbus::mcap
