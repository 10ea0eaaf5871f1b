// WriteTrainingPlot: metrics.jsonl -> two data files -> gnuplot PNG.
#include "trainer/plot.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace blockserve::trainer {

absl::Status WriteTrainingPlot(const std::string& metrics_jsonl, const std::string& png) {
  std::ifstream in(metrics_jsonl);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", metrics_jsonl));
  const std::string train_dat = png + ".train.dat", eval_dat = png + ".eval.dat";
  std::ofstream train(train_dat), eval(eval_dat);
  std::string line;
  int train_rows = 0, eval_rows = 0;
  while (std::getline(in, line)) {
    const nlohmann::json row = nlohmann::json::parse(line, nullptr, false);
    if (row.is_discarded() || !row.contains("step")) continue;
    if (row.contains("bits_per_token")) {
      train << row["step"].get<int64_t>() << " " << row["bits_per_token"].get<double>() << "\n";
      ++train_rows;
    }
    if (row.contains("eval_bits_per_token")) {
      eval << row["step"].get<int64_t>() << " " << row["eval_bits_per_token"].get<double>() << "\n";
      ++eval_rows;
    }
  }
  train.close();
  eval.close();
  if (train_rows == 0) return absl::FailedPreconditionError("no training rows to plot");
  const std::string script = absl::StrCat(
      "set terminal png size 900,560\nset output '", png, "'\nset xlabel 'step'\nset ylabel 'bits/token'\n",
      "set grid\nset key top right\nplot '", train_dat, "' using 1:2 with lines lw 1 title 'train'",
      eval_rows > 0 ? absl::StrCat(", '", eval_dat, "' using 1:2 with linespoints lw 2 pt 7 title 'held-out'") : "",
      "\n");
  const std::string script_path = png + ".gp";
  {
    std::ofstream out(script_path);
    out << script;
  }
  const std::string cmd = absl::StrCat("gnuplot '", script_path, "' 2>&1");
  const int rc = std::system(cmd.c_str());
  std::remove(script_path.c_str());
  std::remove(train_dat.c_str());
  std::remove(eval_dat.c_str());
  if (rc != 0) return absl::UnavailableError(absl::StrCat("gnuplot failed (rc ", rc, "); install gnuplot-nox"));
  return absl::OkStatus();
}

}  // namespace blockserve::trainer
