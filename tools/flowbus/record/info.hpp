// flowbus record info FILE: what a recording holds.
#pragma once

#include <CLI/CLI.hpp>

namespace flowbus::cli {

void add_record_info_command(CLI::App& record);

}  // namespace flowbus::cli
