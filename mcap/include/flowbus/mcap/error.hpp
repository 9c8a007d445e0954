// What the MCAP writer and reader throw: a message that says where and what.
#pragma once

#include <stdexcept>
#include <string>

namespace flowbus::mcap {

class McapError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace flowbus::mcap
