// Token and TOML config files (see config_file.hpp).
#include "config_file.hpp"

#include <fstream>
#include <sstream>

#include "flowbus/error.hpp"

namespace flowbus::cli {

std::string read_token(const std::string& file, const std::string& option) {
  std::ifstream in(file);
  if (!in) throw Error(ErrorCode::NotFound, "cannot read " + option + " '" + file + "'");
  std::stringstream text;
  text << in.rdbuf();
  std::string token = text.str();
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) token.pop_back();
  if (token.size() < 16)
    throw Error(ErrorCode::InvalidArgument,
                "the token in '" + file +
                    "' is shorter than 16 characters; use a long random one (e.g. `openssl rand -hex 32`)");
  return token;
}

void apply_config_file(CLI::App& cmd, const std::string& file, const std::string& help) {
  std::ifstream in(file);
  if (!in) throw Error(ErrorCode::NotFound, "cannot read --config '" + file + "'");
  std::vector<CLI::ConfigItem> items;
  try {
    items = CLI::ConfigTOML().from_config(in);
  } catch (const CLI::Error& e) {
    throw Error(ErrorCode::InvalidArgument, "--config '" + file + "': " + e.what());
  }
  for (const CLI::ConfigItem& item : items) {
    if (item.name == "++" || item.name == "--") continue;  // section markers
    CLI::Option* opt = item.name == "config" ? nullptr : cmd.get_option_no_throw("--" + item.name);
    if (opt == nullptr)
      throw Error(ErrorCode::InvalidArgument, "--config '" + file + "': unknown key '" + item.name +
                                                  "'; the keys are the long options of `" + help + "`");
    if (opt->count() != 0) continue;  // the command line wins
    opt->add_result(item.inputs);
    opt->run_callback();
  }
}

}  // namespace flowbus::cli
