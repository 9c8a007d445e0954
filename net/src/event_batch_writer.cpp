// EventBatchWriter: events staged in storage sized once, then one EventBatch
// frame written by a FlatBufferBuilder that never needs to grow.
#include <cstring>

#include "flowbus/wire/codec.hpp"

namespace flowbus::wire {

namespace {

// Table, vtable, union, vector headers, identifier and prefix of a batch
// frame, with room for alignment padding.
constexpr size_t kBatchOverhead = 256;

size_t frame_capacity(size_t max_bytes, size_t max_events) {
  return max_bytes + max_events * sizeof(EventEntry) + kBatchOverhead;
}

}  // namespace

EventBatchWriter::EventBatchWriter(size_t max_bytes, size_t max_events)
    : max_bytes_(max_bytes), max_events_(max_events),
      fbb_(max_events > 0 && max_bytes <= UINT32_MAX ? frame_capacity(max_bytes, max_events) : 0) {
  if (max_events == 0 || max_events > UINT32_MAX || max_bytes == 0 ||
      frame_capacity(max_bytes, max_events) > kDefaultMaxFrameBytes + kLengthPrefixSize) {
    throw std::invalid_argument("EventBatchWriter: max_bytes " + std::to_string(max_bytes) + " and max_events " +
                                std::to_string(max_events) + " give a batch frame above the " +
                                std::to_string(kDefaultMaxFrameBytes) + "-byte frame limit, or are 0");
  }
  entries_.reserve(max_events);
  staging_.resize(max_bytes);
}

void EventBatchWriter::start(uint32_t stream) noexcept {
  stream_ = stream;
  entries_.clear();  // keeps the capacity
  payload_bytes_ = 0;
  subject_bytes_ = 0;
}

bool EventBatchWriter::add(uint64_t sequence, uint64_t time_ns, std::string_view subject,
                            std::span<const uint8_t> payload, uint16_t flags) noexcept {
  if (entries_.size() == max_events_ || subject.size() > UINT16_MAX ||
      payload.size() + subject.size() > max_bytes_ - bytes()) {
    return false;
  }
  // Payloads grow from the front of the staging area, subjects from its back.
  if (!payload.empty()) std::memcpy(staging_.data() + payload_bytes_, payload.data(), payload.size());
  subject_bytes_ += subject.size();
  if (!subject.empty()) std::memcpy(staging_.data() + max_bytes_ - subject_bytes_, subject.data(), subject.size());
  // Until finish() knows where the subjects start, subject_offset holds the
  // subject's distance from the back of the staging area.
  entries_.emplace_back(sequence, time_ns, static_cast<uint32_t>(payload_bytes_), static_cast<uint32_t>(payload.size()),
                        static_cast<uint32_t>(subject_bytes_), static_cast<uint16_t>(subject.size()), flags);
  payload_bytes_ += payload.size();
  return true;
}

void EventBatchWriter::drop_last() noexcept {
  if (entries_.empty()) return;
  payload_bytes_ -= entries_.back().payload_size();
  subject_bytes_ -= entries_.back().subject_size();
  entries_.pop_back();
}

std::span<const uint8_t> EventBatchWriter::finish() {
  if (entries_.empty()) throw std::logic_error("EventBatchWriter::finish: the batch has no event");
  fbb_.Clear();
  // bytes = payloads, then subjects, written in place.
  uint8_t* out = nullptr;
  const auto bytes_vec = fbb_.CreateUninitializedVector(payload_bytes_ + subject_bytes_, 1, &out);
  if (payload_bytes_) std::memcpy(out, staging_.data(), payload_bytes_);
  if (subject_bytes_) std::memcpy(out + payload_bytes_, staging_.data() + max_bytes_ - subject_bytes_, subject_bytes_);
  EventEntry* entries = nullptr;
  const auto entries_vec = fbb_.CreateUninitializedVectorOfStructs(entries_.size(), &entries);
  const auto end = static_cast<uint32_t>(payload_bytes_ + subject_bytes_);
  for (size_t i = 0; i < entries_.size(); ++i) {
    const EventEntry& e = entries_[i];
    entries[i] = EventEntry(e.sequence(), e.time_ns(), e.payload_offset(), e.payload_size(),
                            end - e.subject_offset(), e.subject_size(), e.flags());
  }
  const auto batch = CreateEventBatch(fbb_, stream_, entries_vec, bytes_vec);
  fbb_.FinishSizePrefixed(CreateFrame(fbb_, Body::EventBatch, batch.Union()), FrameIdentifier());
  return {fbb_.GetBufferPointer(), fbb_.GetSize()};
}

}  // namespace flowbus::wire
