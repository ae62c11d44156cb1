// Progress of a long study on stderr: a bar, the unit being run, elapsed time and an ETA. Work is counted
// in units of estimated cost (a meta-training run weighs more than one meta-gradient), and the ETA comes from
// the time per unit of the work actually run in this process (units read back from a resumed run count as
// done, not as time). On a terminal the line is redrawn in place; otherwise each unit gets its own line.
#pragma once

#include <chrono>
#include <string>

namespace theria::lab {

class Progress {
 public:
  Progress(std::string name, double total_work);
  // The unit about to run (shown on the line).
  void begin(const std::string& what);
  // The unit that just ended; `resumed`: its result was read from a previous run's files.
  void end(double work, bool resumed);
  void finish();

 private:
  void draw(const std::string& what, bool final_line);

  std::string name_, what_;
  double total_ = 0.0, done_ = 0.0, timed_work_ = 0.0;
  double timed_seconds_ = 0.0;
  int resumed_units_ = 0;
  bool tty_ = false;
  std::chrono::steady_clock::time_point start_, unit_start_;
};

// Whether Progress draws at all in this process (default true): the ranks of a distributed run other than rank 0
// do not, so that one bar is drawn (docs/distributed.md).
void set_progress_shown(bool shown);

// "1 min 05 s", "12 s", "2 h 03 min".
std::string format_seconds(double seconds);

}  // namespace theria::lab
