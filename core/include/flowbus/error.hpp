// flowbus errors. One rule: set-up calls (open, create, attach) throw
// flowbus::Error; hot-path calls (publish, poll, release) are noexcept and
// return a [[nodiscard]] status enum.
#pragma once

#include <stdexcept>
#include <string>

namespace flowbus {

enum class ErrorCode {
  InvalidName,        // a bus, topic, publisher or pattern name breaks the naming rules
  InvalidArgument,    // an option is out of range (ring size, mode, ...)
  NotFound,           // the bus or topic does not exist
  AlreadyExists,      // a topic exists with other settings (type, policy, ring size, ...)
  NameInUse,          // a live publisher already owns this name
  IncompatibleSchema, // the schema is not a compatible evolution of the registered one
  VersionMismatch,    // a segment was written by another layout version
  Corrupt,            // shared memory fails a consistency check
  PermissionDenied,   // Unix ownership and mode forbid the access
  NoSpace,            // /dev/shm (or a table in the directory) is full
  BadPayload,         // JSON or bytes that do not fit the topic's schema
  System,             // an unexpected OS error
  WrongProcess,       // a handle used in a fork() child of the process that made it
};

const char* to_string(ErrorCode code) noexcept;

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace flowbus
