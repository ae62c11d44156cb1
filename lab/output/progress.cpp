#include "output/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace theria::lab {

namespace {
bool g_shown = true;
}  // namespace

void set_progress_shown(bool shown) { g_shown = shown; }

std::string format_seconds(double s) {
  char buf[32];
  if (!std::isfinite(s) || s < 0) return "?";
  const long t = std::lround(s);
  if (t < 60) std::snprintf(buf, sizeof buf, "%ld s", t);
  else if (t < 3600) std::snprintf(buf, sizeof buf, "%ld min %02ld s", t / 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%ld h %02ld min", t / 3600, (t % 3600) / 60);
  return buf;
}

Progress::Progress(std::string name, double total_work)
    : name_(std::move(name)), total_(std::max(total_work, 1e-9)), tty_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()), unit_start_(start_) {}

void Progress::begin(const std::string& what) {
  unit_start_ = std::chrono::steady_clock::now();
  what_ = what;
  if (tty_) draw(what, false);
}

void Progress::end(double work, bool resumed) {
  const auto now = std::chrono::steady_clock::now();
  done_ += work;
  if (resumed) {
    ++resumed_units_;
  } else {
    timed_work_ += work;
    timed_seconds_ += std::chrono::duration<double>(now - unit_start_).count();
  }
  if (!tty_) draw(resumed ? what_ + " (read back)" : what_, true);
}

void Progress::finish() {
  if (!g_shown) return;
  if (tty_) std::fputc('\n', stderr);
  std::fprintf(stderr, "[%s] done in %s%s\n", name_.c_str(),
               format_seconds(std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count()).c_str(),
               resumed_units_ > 0 ? (", " + std::to_string(resumed_units_) + " units read back from an earlier run").c_str()
                                  : "");
}

void Progress::draw(const std::string& what, bool own_line) {
  if (!g_shown) return;
  constexpr int kWidth = 24;
  const double frac = std::min(done_ / total_, 1.0);
  const int filled = static_cast<int>(frac * kWidth);
  std::string bar(filled, '#');
  bar.resize(kWidth, '.');
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double eta = timed_work_ > 0 ? (total_ - done_) * timed_seconds_ / timed_work_ : NAN;
  std::fprintf(stderr, "%s[%s] [%s] %3.0f%% elapsed %s, ETA %s  %s%s", tty_ ? "\r\033[K" : "", name_.c_str(),
               bar.c_str(), 100.0 * frac, format_seconds(elapsed).c_str(), format_seconds(eta).c_str(), what.c_str(),
               own_line ? "\n" : "");
  std::fflush(stderr);
}

}  // namespace theria::lab
