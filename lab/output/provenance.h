// What every study's files record about the run that made them.
#pragma once

#include <string>

namespace theria::lab {

struct StudyProvenance {
  std::string command;           // the command line that made the files
  std::string resolved_backend;  // what the requested backend resolved to (taxonomy), or "" (sweeps name theirs)
  std::string device_name;       // e.g. the GPU's name, or "cpu"
  double seconds = 0.0;
};

}  // namespace theria::lab
