// What the sidecar and the bridge read from files: a shared-secret token,
// and options from a TOML config.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace flowbus::cli {

/// The token in `file`, trailing newline stripped; at least 16 characters.
/// Throws Error naming the file.
std::string read_token(const std::string& file, const std::string& option = "--token-file");

/// Options from a TOML file, for those not given on the command line (CLI11
/// 2.1 reads config files for the main command only). Keys are the long
/// option names; an unknown key is an error that points to `help`.
void apply_config_file(CLI::App& cmd, const std::string& file, const std::string& help);

}  // namespace flowbus::cli
