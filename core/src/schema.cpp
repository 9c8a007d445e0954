// FlatBuffers schema handling for flowbus (see schema.hpp).
//
// Notes on FlatBuffers 2.0.8 behaviour this file relies on:
//  - Parser::Serialize() without opts.project_root stores no file paths, so
//    the .bfbs bytes (and schema_id) do not depend on where the .fbs lives.
//    (flatc sets a project root and embeds "//file.fbs", so flatc output and
//    compile_schema_file output differ in bytes and in schema_id.)
//  - Parser::ConformTo works on parsers built with Parser::Deserialize and
//    gives the same answers as on parsers built from source. It accepts
//    removing a table's last field, growing a struct and changing the root
//    table, so check_compatible_evolution adds those checks itself.
//  - Parser::error_ accumulates across calls and a failed parse can leave
//    internal stacks dirty, so the codec rebuilds its parser after an error.
#include <cctype>
#include <cstdio>
#include "flowbus/schema.hpp"

#include <flatbuffers/idl.h>
#include <flatbuffers/reflection.h>
#include <flatbuffers/reflection_generated.h>
#include <flatbuffers/verifier.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <string_view>

#include "flowbus/error.hpp"

namespace flowbus {
namespace {

constexpr flatbuffers::uoffset_t kMaxDepth = 64;
constexpr flatbuffers::uoffset_t kMaxTables = 100000;
// Smallest possible FlatBuffer: root offset, vtable offset, 2-entry vtable.
// (FLATBUFFERS_MIN_BUFFER_SIZE in 2.0.8 only compiles inside namespace flatbuffers.)
constexpr size_t kMinBufferSize = sizeof(flatbuffers::uoffset_t) +
                                  sizeof(flatbuffers::soffset_t) + 2 * sizeof(uint16_t);

const char* const kEvolutionRules =
    "FlatBuffers evolution rules: add new fields only at the end of a table, "
    "never change a field's type, id or default, mark unused fields "
    "(deprecated) instead of deleting them, and never change a struct";

// A schema file larger than this is no schema: /dev/zero, a log given by
// mistake. Reading stops here instead of eating memory.
constexpr uint64_t kMaxSchemaFileBytes = 16u << 20;

std::vector<uint8_t> read_file(const std::string& path) {
  const auto refuse = [&](const std::string& why) {
    throw Error(ErrorCode::InvalidArgument, "cannot read schema file '" + path + "': " + why);
  };
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec) refuse(ec.message() + "; check the path and its permissions");
  if (status.type() == std::filesystem::file_type::directory)
    refuse("it is a directory; give a .fbs (or compiled .bfbs) file in it");
  if (status.type() != std::filesystem::file_type::regular)
    refuse("it is not a regular file (a device or a pipe?); give a .fbs (or compiled .bfbs) file");
  std::ifstream in(path, std::ios::binary);
  if (!in) refuse(std::string(std::strerror(errno)) + "; check the path and its permissions");
  const auto too_large = [&] {
    refuse("larger than " + std::to_string(kMaxSchemaFileBytes >> 20) + " MiB, the most a schema file may hold; is it the right file?");
  };
  if (std::filesystem::file_size(path, ec) > kMaxSchemaFileBytes && !ec) too_large();
  // Read in chunks up to one byte past the limit: a file that grew since is refused too.
  std::vector<uint8_t> bytes;
  char chunk[64 * 1024];
  while (in && bytes.size() <= kMaxSchemaFileBytes) {
    in.read(chunk, sizeof chunk);
    bytes.insert(bytes.end(), chunk, chunk + in.gcount());
  }
  if (in.bad()) refuse("read error; check the file and retry");
  if (bytes.size() > kMaxSchemaFileBytes) too_large();
  return bytes;
}

// Verifier limits for a .bfbs. A schema's own nesting is shallow (Schema ->
// Object -> Field -> Type); a topic holds at most 32 KiB of schema, a file
// given to compile_schema_file at most kMaxBfbsBytes.
constexpr size_t kMaxBfbsBytes = 1u << 20;
constexpr flatbuffers::uoffset_t kMaxBfbsDepth = 16;
constexpr flatbuffers::uoffset_t kMaxBfbsTables = 100000;

bool is_valid_bfbs(const std::vector<uint8_t>& bfbs) {
  if (bfbs.empty() || bfbs.size() > kMaxBfbsBytes) return false;
  flatbuffers::Verifier::Options vopts;
  vopts.max_depth = kMaxBfbsDepth;
  vopts.max_tables = kMaxBfbsTables;
  flatbuffers::Verifier verifier(bfbs.data(), bfbs.size(), vopts);
  return reflection::VerifySchemaBuffer(verifier);
}

// ---------------------------------------------------------------------------
// What FlatBuffers 2.0.8 takes on trust in a schema that passed the Verifier.
// Parser::Deserialize (evolution checks, SchemaCodec), the reflection Verify
// (SchemaCodec::verify) and GenerateText index objects, enums and field ids
// without bounds checks, assert on base types they do not know, dereference
// absent union member types and recurse through nested structs. A bfbs
// written by flatc or compile_schema_file is always consistent; one read from
// a file or a bus directory may not be, so it is checked before any use.

// Type fields are read as raw bytes: reflection's base_type() casts any byte
// to the enum, and a value outside it is undefined behaviour.
using Base = int;
Base base_type_of(const reflection::Type& t) {
  return reinterpret_cast<const flatbuffers::Table&>(t).GetField<int8_t>(reflection::Type::VT_BASE_TYPE, 0);
}
Base element_of(const reflection::Type& t) {
  return reinterpret_cast<const flatbuffers::Table&>(t).GetField<int8_t>(reflection::Type::VT_ELEMENT, 0);
}
bool is_integer(Base t) { return t >= reflection::UType && t <= reflection::ULong; }
bool is_scalar(Base t) { return t >= reflection::UType && t <= reflection::Double; }

uint64_t scalar_size(Base t) {
  static constexpr uint8_t kSizes[] = {0, 1, 1, 1, 1, 2, 2, 4, 4, 8, 8, 4, 8};
  return is_scalar(t) ? kSizes[t] : 0;
}

class SchemaChecker {
 public:
  explicit SchemaChecker(const reflection::Schema& schema)
      : schema_(schema), objects_(*schema.objects()), enums_(*schema.enums()) {}

  /// "" if consistent, else what is wrong.
  std::string problem() {
    if (schema_.fbs_files() != nullptr)
      for (const reflection::SchemaFile* file : *schema_.fbs_files())
        if (file->included_filenames() == nullptr) return "file " + file->filename()->str() + " has no list of includes";
    // Names are unique among all types (tables, structs, enums, unions),
    // among an object's fields and among an enum's values: Parser::Deserialize
    // frees twice what it cannot add under a taken name.
    std::set<std::string_view> names;
    for (const reflection::Object* o : objects_)
      if (!names.insert(o->name()->string_view()).second) return "two types are named " + o->name()->str();
    for (const reflection::Enum* e : enums_)
      if (!names.insert(e->name()->string_view()).second) return "two types are named " + e->name()->str();
    for (const reflection::Enum* e : enums_)
      if (std::string p = enum_problem(*e); !p.empty()) return p;
    for (const reflection::Object* o : objects_)
      if (std::string p = object_problem(*o); !p.empty()) return p;
    state_.assign(objects_.size(), 0);
    for (flatbuffers::uoffset_t i = 0; i < objects_.size(); ++i)
      if (objects_.Get(i)->is_struct() && struct_cycle(i)) return "struct " + objects_.Get(i)->name()->str() + " contains itself";
    return "";
  }

 private:
  bool object_index(int32_t index) const { return index >= 0 && uint32_t(index) < objects_.size(); }
  bool enum_index(int32_t index) const { return index >= 0 && uint32_t(index) < enums_.size(); }
  bool union_index(int32_t index) const { return enum_index(index) && enums_.Get(uint32_t(index))->is_union(); }
  const reflection::Object& object(int32_t index) const { return *objects_.Get(uint32_t(index)); }

  std::string enum_problem(const reflection::Enum& e) const {
    if (!is_integer(base_type_of(*e.underlying_type()))) return "enum " + e.name()->str() + " has a non-integer underlying type";
    std::set<std::string_view> names;
    for (const reflection::EnumVal* v : *e.values())
      if (!names.insert(v->name()->string_view()).second) return "enum " + e.name()->str() + " has two values named " + v->name()->str();
    if (!e.is_union()) return "";
    for (const reflection::EnumVal* v : *e.values()) {
      if (v->value() == 0) continue;  // NONE
      const reflection::Type* member = v->union_type();
      if (member == nullptr || base_type_of(*member) != reflection::Obj || !object_index(member->index()))
        return "union " + e.name()->str() + " member " + v->name()->str() + " names no table or struct of the schema";
    }
    return "";
  }

  // A value type, alone or as the element of a vector or array.
  std::string value_problem(Base t, int32_t index, bool in_struct) const {
    if (t == reflection::UType) return union_index(index) ? "" : "a union type without its union";
    if (t == reflection::Bool || t == reflection::Float || t == reflection::Double)
      return index == -1 ? "" : "an enum of a non-integer type";
    if (is_integer(t)) return index == -1 || enum_index(index) ? "" : "an enum that is not in the schema";
    if (t == reflection::Obj) {
      if (!object_index(index)) return "a table or struct that is not in the schema";
      return in_struct && !object(index).is_struct() ? "a table inside a struct" : "";
    }
    if (in_struct) return "a type a struct cannot hold";
    if (t == reflection::String) return "";
    if (t == reflection::Union) return union_index(index) ? "" : "a union that is not in the schema";
    return "an unknown type";
  }

  std::string field_problem(const reflection::Object& o, const reflection::Field& f) const {
    const reflection::Type& type = *f.type();
    const Base t = base_type_of(type), el = element_of(type);
    const bool in_struct = o.is_struct();
    std::string p;
    if (f.required() && f.optional()) return "field " + o.name()->str() + "." + f.name()->str() + " is both required and optional";
    if (t == reflection::Vector) {
      p = in_struct ? "a vector inside a struct"
          : el == reflection::Vector || el == reflection::Array || el == reflection::None ? "a vector of an unknown type"
                                                                                            : value_problem(el, type.index(), false);
    } else if (t == reflection::Array) {
      p = !in_struct ? "an array outside a struct"
          : type.fixed_length() == 0 || !(is_scalar(el) || el == reflection::Obj) ? "an array of an unknown type or length"
                                                                                  : value_problem(el, type.index(), true);
    } else {
      p = value_problem(t, type.index(), in_struct);
    }
    if (p.empty() && (t == reflection::Union || (t == reflection::Vector && el == reflection::Union))) {
      // Its type field comes just before it: the same union, id one less.
      bool found = false;
      for (const reflection::Field* g : *o.fields()) {
        const reflection::Type& gt = *g->type();
        const bool utype = t == reflection::Union ? base_type_of(gt) == reflection::UType
                                                  : base_type_of(gt) == reflection::Vector && element_of(gt) == reflection::UType;
        found |= uint32_t(g->id()) + 1 == f.id() && utype && gt.index() == type.index();
      }
      if (!found) p = "a union without its type field";
    }
    if (p.empty() && in_struct && uint64_t(f.offset()) + inline_size(type) > uint64_t(o.bytesize()))
      p = "a place past the end of its struct";
    return p.empty() ? "" : "field " + o.name()->str() + "." + f.name()->str() + " has " + p;
  }

  // Bytes of a struct field (scalar, struct or array of either); checked types only.
  uint64_t inline_size(const reflection::Type& type) const {
    const bool array = base_type_of(type) == reflection::Array;
    const Base t = array ? element_of(type) : base_type_of(type);
    const uint64_t one = t == reflection::Obj ? uint64_t(uint32_t(object(type.index()).bytesize())) : scalar_size(t);
    return array ? one * type.fixed_length() : one;
  }

  std::string object_problem(const reflection::Object& o) const {
    const auto& fields = *o.fields();
    if (o.is_struct() && (fields.size() == 0 || o.bytesize() <= 0 || o.minalign() <= 0 || o.minalign() > 256 ||
                          (o.minalign() & (o.minalign() - 1)) != 0))
      return "struct " + o.name()->str() + " has an impossible size or alignment";
    if (!o.is_struct() && o.bytesize() != 0) return "table " + o.name()->str() + " has a struct size";
    // Field ids are 0..n-1, each once (Parser::Deserialize indexes an array by id).
    std::vector<bool> seen(fields.size(), false);
    std::set<std::string_view> names;
    for (const reflection::Field* f : fields) {
      if (!names.insert(f->name()->string_view()).second)
        return "table or struct " + o.name()->str() + " has two fields named " + f->name()->str();
      if (f->id() >= fields.size() || seen[f->id()])
        return "field " + o.name()->str() + "." + f->name()->str() + " has a duplicate or out-of-range id " + std::to_string(f->id());
      seen[f->id()] = true;
    }
    for (const reflection::Field* f : fields)
      if (std::string p = field_problem(o, *f); !p.empty()) return p;
    // At most one key, on a scalar or string field (Parser::Deserialize frees
    // a second key field it still holds: a use after free).
    int keys = 0;
    for (const reflection::Field* f : fields) {
      if (!f->key()) continue;
      const Base t = base_type_of(*f->type());
      if (++keys > 1 || !(t == reflection::String || (is_scalar(t) && t != reflection::UType)))
        return "table or struct " + o.name()->str() + " has a second key or a key of a type that cannot be one (" + f->name()->str() + ")";
    }
    return o.is_struct() ? struct_layout_problem(o) : "";
  }

  // Parser::Deserialize asserts that a struct's fields, in id order, follow
  // each other from offset 0 and end, padded to minalign, at its bytesize.
  std::string struct_layout_problem(const reflection::Object& o) const {
    const auto& fields = *o.fields();
    std::vector<const reflection::Field*> by_id(fields.size());
    for (const reflection::Field* f : fields) by_id[f->id()] = f;
    uint64_t end = 0;
    for (const reflection::Field* f : by_id) {
      if (f->offset() < end || (end == 0 && f->offset() != 0))
        return "struct " + o.name()->str() + " has overlapping or misordered fields";
      end = uint64_t(f->offset()) + inline_size(*f->type());
    }
    const uint64_t align = uint64_t(o.minalign());
    if (((end + align - 1) & ~(align - 1)) != uint64_t(o.bytesize()))
      return "struct " + o.name()->str() + " has a size that does not match its fields";
    return "";
  }

  // Depth-first over struct-in-struct fields (types already checked): 1 = on the path, 2 = done.
  bool struct_cycle(uint32_t i) {
    if (state_[i] == 2) return false;
    if (state_[i] == 1) return true;
    state_[i] = 1;
    for (const reflection::Field* f : *objects_.Get(i)->fields()) {
      const reflection::Type& t = *f->type();
      const Base bt = base_type_of(t) == reflection::Array ? element_of(t) : base_type_of(t);
      if (bt == reflection::Obj && struct_cycle(uint32_t(t.index()))) return true;
    }
    state_[i] = 2;
    return false;
  }

  const reflection::Schema& schema_;
  const flatbuffers::Vector<flatbuffers::Offset<reflection::Object>>& objects_;
  const flatbuffers::Vector<flatbuffers::Offset<reflection::Enum>>& enums_;
  std::vector<uint8_t> state_;
};

// Verifies `bfbs` and returns its root Schema; `what` names the buffer in errors.
const reflection::Schema& checked_schema(const std::vector<uint8_t>& bfbs,
                                         const std::string& what) {
  if (!is_valid_bfbs(bfbs)) {
    throw Error(ErrorCode::InvalidArgument,
                what + " (" + std::to_string(bfbs.size()) +
                    " bytes) is not a valid binary FlatBuffers schema (.bfbs); "
                    "compile the .fbs with compile_schema_file() or "
                    "'flatc --binary --schema'");
  }
  const reflection::Schema& schema = *reflection::GetSchema(bfbs.data());
  if (std::string problem = SchemaChecker(schema).problem(); !problem.empty()) {
    throw Error(ErrorCode::InvalidArgument,
                what + " (" + std::to_string(bfbs.size()) + " bytes) is not a consistent binary FlatBuffers schema: " +
                    problem + "; recompile it from its .fbs with compile_schema_file() or 'flatc --binary --schema'");
  }
  return schema;
}

// Linear search: does not rely on the objects vector being sorted by name.
const reflection::Object* find_object(const reflection::Schema& schema,
                                      std::string_view name) noexcept {
  if (!schema.objects()) return nullptr;
  for (const reflection::Object* obj : *schema.objects()) {
    if (obj && obj->name() && obj->name()->string_view() == name) return obj;
  }
  return nullptr;
}

std::string table_list(const reflection::Schema& schema) {
  std::string out;
  if (schema.objects()) {
    for (const reflection::Object* obj : *schema.objects()) {
      if (obj->is_struct()) continue;
      if (!out.empty()) out += ", ";
      out += obj->name()->str();
    }
  }
  return out.empty() ? "(none)" : out;
}

// FlatBuffers 2.0.8's reflection Verify dereferences null (or asserts) on a
// payload whose vector of unions lacks its type vector (or has a shorter
// one), so verify() cannot be safe for a type that can hold one. Returns such
// a field reachable from `root`, or nullptr. Only on a checked schema.
const reflection::Field* reachable_union_vector(const reflection::Schema& schema, const reflection::Object& root) {
  const auto& objects = *schema.objects();
  std::vector<const reflection::Object*> todo{&root};
  std::set<const reflection::Object*> seen{&root};
  auto visit = [&](int32_t index) {
    const reflection::Object* o = objects.Get(uint32_t(index));
    if (seen.insert(o).second) todo.push_back(o);
  };
  while (!todo.empty()) {
    const reflection::Object* o = todo.back();
    todo.pop_back();
    for (const reflection::Field* f : *o->fields()) {
      const reflection::Type& t = *f->type();
      const bool vector = t.base_type() == reflection::Vector;
      const reflection::BaseType bt = vector ? t.element() : t.base_type();
      if (vector && bt == reflection::Union) return f;
      if (bt == reflection::Obj) visit(t.index());
      if (bt == reflection::Union)
        for (const reflection::EnumVal* v : *schema.enums()->Get(uint32_t(t.index()))->values())
          if (v->value() != 0) visit(v->union_type()->index());
    }
  }
  return nullptr;
}

std::unique_ptr<flatbuffers::Parser> deserialize_parser(const std::vector<uint8_t>& bfbs,
                                                        const flatbuffers::IDLOptions& opts,
                                                        const std::string& what) {
  auto parser = std::make_unique<flatbuffers::Parser>(opts);
  if (!parser->Deserialize(bfbs.data(), bfbs.size())) {
    throw Error(ErrorCode::InvalidArgument,
                "FlatBuffers could not load " + what + ": " + parser->error_ +
                    "; recompile the schema from its .fbs");
  }
  return parser;
}

// What Parser::ConformTo does not check (see file comment). "" if fine.
std::string extra_evolution_problem(const reflection::Schema& reg,
                                    const reflection::Schema& cand) {
  if (reg.root_table()) {
    const std::string root = reg.root_table()->name()->str();
    if (!cand.root_table()) return "root_type " + root + " is no longer declared";
    if (cand.root_table()->name()->str() != root) {
      return "root_type changed from " + root + " to " + cand.root_table()->name()->str();
    }
  }
  if (!reg.objects()) return "";
  for (const reflection::Object* ro : *reg.objects()) {
    const reflection::Object* co = find_object(cand, ro->name()->string_view());
    if (!co) continue;  // a type that is no longer used; fields referring to it are checked by ConformTo
    const std::string name = ro->name()->str();
    if (ro->is_struct() != co->is_struct()) {
      return name + " changed from " + (ro->is_struct() ? "struct to table" : "table to struct");
    }
    if (ro->is_struct()) {
      if (ro->bytesize() != co->bytesize() || ro->fields()->size() != co->fields()->size()) {
        return "struct " + name + " changed its layout (" + std::to_string(ro->bytesize()) +
               " -> " + std::to_string(co->bytesize()) + " bytes)";
      }
      continue;
    }
    for (const reflection::Field* rf : *ro->fields()) {
      bool kept = false;
      for (const reflection::Field* cf : *co->fields()) {
        if (cf->id() == rf->id()) { kept = true; break; }
      }
      if (!kept) {
        return "field " + name + "." + rf->name()->str() + " (id " + std::to_string(rf->id()) +
               ") was removed";
      }
    }
  }
  return "";
}

flatbuffers::IDLOptions codec_options() {
  flatbuffers::IDLOptions opts;
  opts.strict_json = false;  // accept unquoted field names on input; set true for output
  opts.indent_step = -1;     // single-line output
  opts.output_default_scalars_in_json = true;
  opts.natural_utf8 = true;  // UTF-8 text as is, not \u escapes (invalid UTF-8 still fails)
  return opts;
}

}  // namespace

std::vector<uint8_t> compile_schema_file(const std::string& fbs_path,
                                         const std::vector<std::string>& include_dirs) {
  if (fbs_path.ends_with(".bfbs")) {
    std::vector<uint8_t> bytes = read_file(fbs_path);
    checked_schema(bytes, "schema file '" + fbs_path + "'");
    return bytes;
  }

  std::vector<uint8_t> raw = read_file(fbs_path);
  const std::string source(raw.begin(), raw.end());
  if (source.find('\0') != std::string::npos) {
    throw Error(ErrorCode::InvalidArgument,
                "schema file '" + fbs_path + "' contains NUL bytes; is it a binary file? "
                "Binary schemas must have the .bfbs extension");
  }

  std::string own_dir = std::filesystem::path(fbs_path).parent_path().string();
  if (own_dir.empty()) own_dir = ".";
  std::vector<std::string> dirs{own_dir};
  dirs.insert(dirs.end(), include_dirs.begin(), include_dirs.end());
  std::vector<const char*> dir_ptrs;
  dir_ptrs.reserve(dirs.size() + 1);
  for (const std::string& d : dirs) dir_ptrs.push_back(d.c_str());
  dir_ptrs.push_back(nullptr);

  flatbuffers::Parser parser;
  if (!parser.Parse(source.c_str(), dir_ptrs.data(), fbs_path.c_str())) {
    std::string searched;
    for (const std::string& d : dirs) searched += (searched.empty() ? "" : ", ") + d;
    throw Error(ErrorCode::InvalidArgument,
                "cannot compile schema file '" + fbs_path + "': " + parser.error_ +
                    "; fix the schema (include directories searched: " + searched + ")");
  }
  parser.Serialize();
  const uint8_t* p = parser.builder_.GetBufferPointer();
  return std::vector<uint8_t>(p, p + parser.builder_.GetSize());
}

std::string schema_id(const std::vector<uint8_t>& bfbs) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (uint8_t b : bfbs) {
    h ^= b;
    h *= 0x100000001b3ULL;
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return std::string("fnv1a64:") + hex;
}

std::string schema_root_type(const std::vector<uint8_t>& bfbs) {
  const reflection::Schema& schema = checked_schema(bfbs, "schema");
  return schema.root_table() ? schema.root_table()->name()->str() : std::string();
}

bool schema_has_table(const std::vector<uint8_t>& bfbs, const std::string& type) {
  const reflection::Object* obj = find_object(checked_schema(bfbs, "schema"), type);
  return obj && !obj->is_struct();
}

void check_compatible_evolution(const std::vector<uint8_t>& registered,
                                const std::vector<uint8_t>& candidate) {
  const reflection::Schema& reg = checked_schema(registered, "registered schema");
  const reflection::Schema& cand = checked_schema(candidate, "candidate schema");
  if (registered == candidate) return;

  flatbuffers::IDLOptions opts;
  auto reg_parser = deserialize_parser(registered, opts, "the registered schema");
  auto cand_parser = deserialize_parser(candidate, opts, "the candidate schema");
  std::string problem = cand_parser->ConformTo(*reg_parser);
  if (problem.empty()) problem = extra_evolution_problem(reg, cand);
  if (!problem.empty()) {
    throw Error(ErrorCode::IncompatibleSchema,
                "schema " + schema_id(candidate) +
                    " is not a compatible evolution of the registered schema " +
                    schema_id(registered) + ": " + problem + ". " + kEvolutionRules +
                    "; or publish the new schema on a new topic");
  }
}

// ---------------------------------------------------------------- SchemaCodec

SchemaCodec::SchemaCodec(std::vector<uint8_t> bfbs, const std::string& root_type)
    : bfbs_(std::move(bfbs)), root_type_(root_type) {
  const reflection::Schema& schema = checked_schema(bfbs_, "schema given to SchemaCodec");
  if (root_type_.empty()) {
    if (!schema.root_table()) {
      throw Error(ErrorCode::InvalidArgument,
                  "schema declares no root_type; name the payload table explicitly "
                  "(tables in the schema: " + table_list(schema) + ")");
    }
    root_type_ = schema.root_table()->name()->str();
  }
  const reflection::Object* obj = find_object(schema, root_type_);
  if (!obj) {
    throw Error(ErrorCode::InvalidArgument,
                "type '" + root_type_ + "' is not in the schema; use a fully qualified "
                "table name (tables in the schema: " + table_list(schema) + ")");
  }
  if (obj->is_struct()) {
    throw Error(ErrorCode::InvalidArgument,
                "'" + root_type_ + "' is a struct, but a payload type must be a table "
                "(tables in the schema: " + table_list(schema) + ")");
  }
  if (const reflection::Field* f = reachable_union_vector(schema, *obj)) {
    throw Error(ErrorCode::InvalidArgument,
                "field " + f->name()->str() + " of a table inside " + root_type_ +
                    " is a vector of unions, which FlatBuffers 2.0.8 cannot verify safely; "
                    "JSON conversion does not support it (use a vector of tables that hold a union)");
  }
  reset_parser();
}

SchemaCodec::~SchemaCodec() = default;
SchemaCodec::SchemaCodec(SchemaCodec&&) noexcept = default;
SchemaCodec& SchemaCodec::operator=(SchemaCodec&&) noexcept = default;

void SchemaCodec::reset_parser() const {
  auto parser = deserialize_parser(bfbs_, codec_options(), "the schema");
  if (!parser->SetRootType(root_type_.c_str())) {
    throw Error(ErrorCode::InvalidArgument,
                "FlatBuffers cannot use '" + root_type_ + "' as root type: " + parser->error_);
  }
  parser_ = std::move(parser);
}

namespace {

// FlatBuffers reports "LINE: COLUMN: error: ..." without naming the field
// (e.g. for a string where a number belongs): find the last key before that
// spot so the message can name it.
std::string field_near_error(std::string_view json, const std::string& err) {
  unsigned line = 0, column = 0;
  if (std::sscanf(err.c_str(), "%u: %u:", &line, &column) != 2 || line == 0) return {};
  size_t start = 0;
  for (unsigned l = 1; l < line && start != std::string_view::npos; ++l) {
    start = json.find('\n', start);
    if (start != std::string_view::npos) ++start;
  }
  if (start == std::string_view::npos) return {};
  const std::string_view before = json.substr(start, std::min<size_t>(column, json.size() - start));
  for (size_t colon = before.rfind(':'); colon != std::string_view::npos && colon > 0;
       colon = before.rfind(':', colon - 1)) {
    size_t end = colon;
    while (end > 0 && (before[end - 1] == ' ' || before[end - 1] == '\t')) --end;
    const bool quoted = end > 0 && before[end - 1] == '"';
    if (quoted) --end;
    size_t begin = end;
    while (begin > 0 && (std::isalnum(static_cast<unsigned char>(before[begin - 1])) || before[begin - 1] == '_')) --begin;
    if (begin < end && (!quoted || (begin > 0 && before[begin - 1] == '"'))) return std::string(before.substr(begin, end - begin));
    if (colon == 0) break;
  }
  return {};
}

}  // namespace

std::vector<uint8_t> SchemaCodec::json_to_flatbuffer(std::string_view json) const {
  if (json.find('\0') != std::string_view::npos) {
    throw Error(ErrorCode::BadPayload,
                "JSON for " + root_type_ + " contains a NUL byte; send text JSON only");
  }
  const std::string text(json);  // the parser needs a NUL-terminated string
  parser_->opts.strict_json = false;
  parser_->error_.clear();
  if (!parser_->ParseJson(text.c_str())) {
    std::string err = parser_->error_;
    reset_parser();  // a failed parse can leave the parser in a bad state
    const std::string field = field_near_error(json, err);
    throw Error(ErrorCode::BadPayload,
                "JSON does not fit " + root_type_ + (field.empty() ? "" : " at field '" + field + "'") + ": " + err +
                    "; check field names and value types against the schema");
  }
  const uint8_t* p = parser_->builder_.GetBufferPointer();
  std::vector<uint8_t> out(p, p + parser_->builder_.GetSize());
  parser_->builder_.Clear();
  return out;
}

std::string SchemaCodec::flatbuffer_to_json(const uint8_t* data, size_t size) const {
  if (!verify(data, size)) {
    throw Error(ErrorCode::BadPayload,
                "payload (" + std::to_string(size) + " bytes) is not a valid " + root_type_ +
                    " FlatBuffer (verification failed: out-of-bounds offset, misalignment, "
                    "depth > 64 or > 100000 tables); check that the publisher uses schema " +
                    schema_id(bfbs_));
  }
  std::string out;
  parser_->opts.strict_json = true;
  const bool ok = flatbuffers::GenerateText(*parser_, data, &out);
  parser_->opts.strict_json = false;
  if (!ok) {
    throw Error(ErrorCode::BadPayload,
                "cannot render " + root_type_ +
                    " payload as JSON (a string field is probably not valid UTF-8); "
                    "fix the publisher's string data");
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  // With natural_utf8, FlatBuffers copies control characters of strings raw
  // (except \b \f \n \r \t), which JSON forbids; escape them. Single-line
  // output has no other bytes below 0x20.
  if (std::any_of(out.begin(), out.end(), [](char c) { return static_cast<unsigned char>(c) < 0x20; })) {
    std::string escaped;
    escaped.reserve(out.size() + 16);
    for (char c : out) {
      if (static_cast<unsigned char>(c) >= 0x20) {
        escaped += c;
      } else {
        char u[8];
        std::snprintf(u, sizeof u, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
        escaped += u;
      }
    }
    out.swap(escaped);
  }
  return out;
}

bool SchemaCodec::verify(const uint8_t* data, size_t size) const noexcept {
  if (data == nullptr || size < kMinBufferSize ||
      size >= FLATBUFFERS_MAX_BUFFER_SIZE) {
    return false;
  }
  flatbuffers::Verifier::Options vopts;
  vopts.max_depth = kMaxDepth;
  vopts.max_tables = kMaxTables;
  flatbuffers::Verifier verifier(data, size, vopts);
  if (verifier.VerifyOffset(0) == 0) return false;  // root offset in bounds and aligned
  const reflection::Schema* schema = reflection::GetSchema(bfbs_.data());
  const reflection::Object* root = find_object(*schema, root_type_);
  return root && flatbuffers::Verify(*schema, *root, data, size, kMaxDepth, kMaxTables);
}

}  // namespace flowbus
