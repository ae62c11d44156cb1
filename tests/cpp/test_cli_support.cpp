// The `theria` program's helpers: JSON numbers that are never NaN, files a parser reads, and a
// helper program started from an argument vector (no shell).
#include "json_out.h"
#include "run_program.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

namespace theria::cli {
namespace {

TEST(JsonOut, NonFiniteNumbersBecomeNullWithAStatus) {
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  EXPECT_TRUE(number_or_null(nan).is_null());
  EXPECT_TRUE(number_or_null(-nan).is_null());
  EXPECT_TRUE(number_or_null(inf).is_null());
  EXPECT_TRUE(number_or_null(-inf).is_null());
  EXPECT_EQ(number_or_null(0.25).get<double>(), 0.25);
  EXPECT_EQ(number_or_null(-1e-300).get<double>(), -1e-300);
  EXPECT_EQ(finite_status(0.0), "ok");
  EXPECT_EQ(finite_status(nan), "nan");
  EXPECT_EQ(finite_status(-nan), "nan");
  EXPECT_EQ(finite_status(inf), "inf");
  EXPECT_EQ(finite_status(-inf), "-inf");
}

TEST(JsonOut, WrittenFilesParseBackWithEscapedStrings) {
  const auto path = std::filesystem::path(::testing::TempDir()) / "theria_json_out.json";
  const std::string hostile = "a \"quoted\" error\nwith a tab\t, a backslash \\ and \x01";
  write_json(path.string(), Json{{"value", number_or_null(std::nan(""))}, {"status", "nan"}, {"error", hostile}});
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_EQ(text.str().find("nan\n"), std::string::npos);
  const auto back = Json::parse(text.str());
  EXPECT_TRUE(back["value"].is_null());
  EXPECT_EQ(back["error"].get<std::string>(), hostile);
  std::filesystem::remove(path);
}

TEST(RunProgram, ArgumentsAreDataNotShellText) {
  // (No std::filesystem::remove_all: libtorch.so exports a broken copy that this binary would bind.)
  const auto dir = std::filesystem::path(::testing::TempDir()) / "theria run_program; touch PWNED";
  std::filesystem::create_directories(dir);
  const auto file = dir / "a b; touch PWNED2 $(touch PWNED3)";
  std::filesystem::remove(file);
  const auto r = run_program({"touch", file.string()});
  EXPECT_TRUE(r.ok()) << r.describe();
  EXPECT_TRUE(std::filesystem::exists(file));
  for (const char* name : {"PWNED", "PWNED2", "PWNED3"}) {
    EXPECT_FALSE(std::filesystem::exists(dir / name)) << name;
    EXPECT_FALSE(std::filesystem::exists(dir.parent_path() / name)) << name;
    EXPECT_FALSE(std::filesystem::exists(name)) << name;
  }
  std::filesystem::remove(file);
  std::filesystem::remove(dir);
}

TEST(RunProgram, ReportsExitStatusSignalAndAProgramThatCannotStart) {
  const auto failed = run_program({"false"});
  EXPECT_TRUE(failed.started);
  EXPECT_EQ(failed.exit_status, 1);
  EXPECT_FALSE(failed.ok());
  const auto killed = run_program({"sh", "-c", "kill -9 $$"});
  EXPECT_EQ(killed.signal, 9);
  EXPECT_EQ(killed.describe(), "killed by signal 9");
  const auto missing = run_program({"/nonexistent/theria-no-such-program"});
  EXPECT_FALSE(missing.started);
  EXPECT_NE(missing.describe().find("could not start"), std::string::npos);
  EXPECT_FALSE(run_program({}).started);
}

TEST(RunProgram, ProgramsRunSideBySideAndEachEndIsReported) {
  // The first waits (up to 20 s) for a file that only the second creates: run one after the other, it would time out.
  const auto dir = std::filesystem::path(::testing::TempDir());
  const auto flag = dir / "theria_run_programs_flag";
  std::filesystem::remove(flag);
  const std::string wait_for_flag = "for i in $(seq 2000); do [ -f \"$1\" ] && exit 3; sleep 0.01; done; exit 1";
  const auto exits = run_programs({{"sh", "-c", wait_for_flag, "sh", flag.string()},
                                   {"touch", flag.string()},
                                   {"/nonexistent/theria-no-such-program"}});
  ASSERT_EQ(exits.size(), 3u);
  EXPECT_EQ(exits[0].exit_status, 3) << exits[0].describe();  // it saw the file
  EXPECT_TRUE(exits[1].ok()) << exits[1].describe();
  EXPECT_FALSE(exits[2].started);
  std::filesystem::remove(flag);
}

}  // namespace
}  // namespace theria::cli
