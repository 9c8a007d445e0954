// Which parts of a bus directory segment the directory fuzzer's input fills
// (directory_fuzz.cpp), and the seed generator reads (make_corpus.cpp).
#pragma once

#include <cstddef>

#include "directory_layout.hpp"

namespace flowbus::detail {

inline constexpr size_t kFuzzParticipants = 8, kFuzzTopics = 4, kFuzzRings = 8;
inline constexpr size_t kTopicFieldsBytes = offsetof(TopicSlot, schema);  // everything but the schema

/// Calls f(segment_offset, length, input_offset) for each window, in input order.
template <class F>
void for_each_window(F&& f) {
  size_t in = 0;
  auto window = [&](size_t offset, size_t length) {
    f(offset, length, in);
    in += length;
  };
  window(0, sizeof(DirectoryHeader));
  for (size_t i = 0; i < kFuzzParticipants; ++i)
    window(offsetof(DirectoryLayout, participants) + i * sizeof(ParticipantSlot), sizeof(ParticipantSlot));
  for (size_t i = 0; i < kFuzzTopics; ++i)
    window(offsetof(DirectoryLayout, topics) + i * sizeof(TopicSlot), kTopicFieldsBytes);
  for (size_t i = 0; i < kFuzzRings; ++i)
    window(offsetof(DirectoryLayout, rings) + i * sizeof(RingSlot), sizeof(RingSlot));
}

}  // namespace flowbus::detail
