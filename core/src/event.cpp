#include "flowbus/event.hpp"

#include <cstdio>
#include <ctime>

#include "flowbus/detail/ring.hpp"
#include "flowbus/error.hpp"

namespace flowbus {

std::string Event::id() const {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%016llx-%llu", static_cast<unsigned long long>(context_->publisher_id),
                static_cast<unsigned long long>(sequence_));
  return buf;
}

std::string Event::time() const { return format_rfc3339(time_ns_); }

std::string format_rfc3339(uint64_t unix_ns) {
  const time_t secs = time_t(unix_ns / 1000000000ull);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[48];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09lluZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<unsigned long long>(unix_ns % 1000000000ull));
  return buf;
}

const char* to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::InvalidName: return "invalid-name";
    case ErrorCode::InvalidArgument: return "invalid-argument";
    case ErrorCode::NotFound: return "not-found";
    case ErrorCode::AlreadyExists: return "already-exists";
    case ErrorCode::NameInUse: return "name-in-use";
    case ErrorCode::IncompatibleSchema: return "incompatible-schema";
    case ErrorCode::VersionMismatch: return "version-mismatch";
    case ErrorCode::Corrupt: return "corrupt";
    case ErrorCode::PermissionDenied: return "permission-denied";
    case ErrorCode::NoSpace: return "no-space";
    case ErrorCode::BadPayload: return "bad-payload";
    case ErrorCode::System: return "system";
    case ErrorCode::WrongProcess: return "wrong-process";
  }
  return "unknown";
}

const char* to_string(Policy policy) noexcept { return policy == Policy::Latest ? "latest" : "block"; }

Policy parse_policy(const std::string& text) {
  if (text == "block") return Policy::Block;
  if (text == "latest") return Policy::Latest;
  throw Error(ErrorCode::InvalidArgument, "unknown policy '" + text + "': use block (lossless) or latest (telemetry)");
}

const char* to_string(PublishStatus status) noexcept {
  switch (status) {
    case PublishStatus::Ok: return "ok";
    case PublishStatus::Full: return "full";
    case PublishStatus::TooLarge: return "too-large";
    case PublishStatus::Duplicate: return "duplicate";
    case PublishStatus::LoanOpen: return "loan-open";
    case PublishStatus::NoLoan: return "no-loan";
    case PublishStatus::WrongProcess: return "wrong-process";
  }
  return "unknown";
}

const char* to_string(ReadStatus status) noexcept {
  switch (status) {
    case ReadStatus::Ok: return "ok";
    case ReadStatus::Empty: return "empty";
    case ReadStatus::Evicted: return "evicted";
    case ReadStatus::Lost: return "lost";
    case ReadStatus::Corrupt: return "corrupt";
    case ReadStatus::WrongProcess: return "wrong-process";
    case ReadStatus::Rejected:
      return "rejected";
  }
  return "unknown";
}

}  // namespace flowbus
