// Data-parallel QAT (qyolo qat --nproc, torchrun's variables) on the CPU with Gloo: two
// processes with batch B end where one process with batch 2B does, and would not without the
// gradient all-reduce; a run resumes on another process count; rank 0 alone writes; bad
// input is one line.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <regex>

#include "qyolo/onnx.h"
#include "qyolo/qat.h"
#include "test_util.h"

namespace qyolo {
namespace {

using testing::data_path;
using testing::run_command;
using testing::run_qyolo;
using testing::temp_dir;
using testing::yolov5n_path;

// `images` calibration images at 64 x 64, 3 epochs at the default --lr 1e-4; with 4 images
// and a global batch of 4, K = 3 steps (the weights move ~0.15% of their range).
std::string qat_args(const std::filesystem::path& dir, int batch, int images = 4) {
  return str_cat("qat --onnx ", yolov5n_path().string(), " --images ",
                 data_path("coco/calib2017/images").string(), " --max-images ", images,
                 " --imgsz 64 --trim --calib-method max --epochs 3 --seed 3 --batch ", batch,
                 " -o ", dir.string());
}

std::string env_run(const std::string& env, const std::string& args) {
  return env + " " + QYOLO_BINARY + " " + args;
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream file(path);
  return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

Graph load(const std::filesystem::path& path) {
  auto graph = load_onnx(path.string());
  EXPECT_TRUE(graph) << graph.status().message();
  return graph ? *graph : Graph();
}

// Over the convolution weights (4-D float initializers): the largest |a - b| of a tensor
// divided by that tensor's max |reference|.
double max_scaled_difference(const Graph& a, const Graph& b, const Graph& reference) {
  double worst = 0.0;
  int compared = 0;
  for (const auto& [name, ref] : reference.initializers) {
    if (ref.dtype() != DType::kFloat32 || ref.shape().size() != 4) continue;
    const Tensor& x = a.initializers.at(name);
    const Tensor& y = b.initializers.at(name);
    double scale = 0.0, diff = 0.0;
    for (int64_t i = 0; i < ref.numel(); ++i) {
      scale = std::max(scale, std::fabs(double{ref.data<float>()[i]}));
      diff = std::max(diff, std::fabs(double{x.data<float>()[i]} - y.data<float>()[i]));
    }
    worst = std::max(worst, diff / std::max(scale, 1e-12));
    ++compared;
  }
  EXPECT_GT(compared, 50);
  return worst;
}

TEST(QatDistributed, EnvironmentIsTorchruns) {
  auto env_of = [](std::map<std::string, std::string> vars) {
    return distributed_env([vars](const char* name) -> const char* {
      auto it = vars.find(name);
      return it == vars.end() ? nullptr : it->second.c_str();
    });
  };
  auto none = env_of({});
  ASSERT_TRUE(none);
  EXPECT_EQ(none->world_size, 1);
  auto run = env_of({{"RANK", "1"},
                     {"WORLD_SIZE", "3"},
                     {"LOCAL_RANK", "0"},
                     {"MASTER_ADDR", "10.0.0.2"},
                     {"MASTER_PORT", "29400"}});
  ASSERT_TRUE(run) << run.status().message();
  EXPECT_EQ(run->rank, 1);
  EXPECT_EQ(run->world_size, 3);
  EXPECT_EQ(run->local_rank, 0);
  EXPECT_EQ(run->master_addr, "10.0.0.2");
  EXPECT_EQ(run->master_port, 29400);
  EXPECT_EQ(env_of({{"WORLD_SIZE", "2"}}).status().message(),
            "WORLD_SIZE is set but RANK is not: torchrun sets both");
  EXPECT_EQ(env_of({{"RANK", "2"}, {"WORLD_SIZE", "2"}}).status().message(),
            "RANK='2': expected a whole number from 0 to 1");
  EXPECT_EQ(env_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}}).status().message(),
            "MASTER_PORT is not set (WORLD_SIZE=2)");
  EXPECT_EQ(env_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "x"}})
                .status()
                .message(),
            "MASTER_PORT='x': expected a whole number from 1 to 65535");
}

TEST(QatDistributed, TwoRanksEqualOneProcessWithTwiceTheBatch) {
  if (!qat_distributed_available()) GTEST_SKIP() << "this LibTorch has no c10d";
  const auto dir = temp_dir();
  auto one = run_qyolo(qat_args(dir / "one", 4));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  auto two = run_qyolo(qat_args(dir / "two", 2) + " --nproc 2");
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_NE(two.output.find("processes 2 (Gloo), 4 images per step (--batch 2 each)"),
            std::string::npos)
      << two.output;
  auto alone =
      run_command(env_run("QYOLO_QAT_NO_ALLREDUCE=1", qat_args(dir / "alone", 2) + " --nproc 2"));
  ASSERT_EQ(alone.exit_code, 0) << alone.output;

  // 5 images: each epoch's second step has 1 image, on rank 0; rank 1 joins with none.
  auto uneven_one = run_qyolo(qat_args(dir / "uneven_one", 4, 5));
  ASSERT_EQ(uneven_one.exit_code, 0) << uneven_one.output;
  auto uneven_two = run_qyolo(qat_args(dir / "uneven_two", 2, 5) + " --nproc 2");
  ASSERT_EQ(uneven_two.exit_code, 0) << uneven_two.output;

  // Calibration ran once, on rank 0: the same scales.
  const Graph start = load(dir / "one" / "calibrated.onnx");
  EXPECT_EQ(max_scaled_difference(start, load(dir / "two" / "calibrated.onnx"), start), 0.0);
  const Graph a = load(dir / "one" / "qat.onnx");
  const Graph b = load(dir / "two" / "qat.onnx");
  const Graph c = load(dir / "alone" / "qat.onnx");
  const double moved = max_scaled_difference(a, start, start);
  const double distributed = max_scaled_difference(b, a, start);
  const double without_all_reduce = max_scaled_difference(c, a, start);
  // The two runs add the same per-image gradients in another order (each rank sums its
  // batch, then Gloo sums the ranks), so after one step they differ by float rounding (seen:
  // 3e-8 of a tensor's max |w|). Fake quantization amplifies that: a weight or activation a
  // rounding apart lands on the other side of a quantization tie, and the next step's
  // gradient differs by a quantization step's worth. The more weights cross a tie, the more
  // (seen after 3 steps: 2e-8 at --lr 1e-4, 6e-5 at 1e-3, 7e-3 at 1e-2); 1e-5 leaves room for
  // other BLAS and thread counts at 1e-4 and is still 100x below the weights' movement.
  EXPECT_GT(moved, 5e-4);
  EXPECT_LE(distributed, 1e-5) << "moved " << moved;
  EXPECT_LT(distributed, moved / 100);
  // Without the all-reduce, rank 0 trains on its half of the images alone.
  EXPECT_GT(without_all_reduce, 100 * std::max(distributed, 1e-7)) << "moved " << moved;
  const Graph uneven_start = load(dir / "uneven_one" / "calibrated.onnx");
  EXPECT_LE(max_scaled_difference(load(dir / "uneven_two" / "qat.onnx"),
                                  load(dir / "uneven_one" / "qat.onnx"), uneven_start),
            1e-5);
  std::printf(
      "weights moved %.3g; two ranks differ by %.3g; without all-reduce by %.3g "
      "(of each tensor's max |w|)\n",
      moved, distributed, without_all_reduce);
}

TEST(QatDistributed, ResumesOnAnotherProcessCount) {
  if (!qat_distributed_available()) GTEST_SKIP() << "this LibTorch has no c10d";
  const auto dir = temp_dir();
  auto straight = run_qyolo(qat_args(dir / "straight", 4));
  ASSERT_EQ(straight.exit_code, 0) << straight.output;
  // Two ranks stop at step 3 (epoch 3) and keep the checkpoint of epoch 2; one process goes on.
  auto stopped = run_command(
      env_run("QYOLO_QAT_INJECT_NAN_STEP=3", qat_args(dir / "resumed", 2) + " --nproc 2"));
  EXPECT_EQ(stopped.exit_code, 1);
  EXPECT_TRUE(std::regex_search(
      stopped.output,
      std::regex("qyolo qat: error: rank [01] of 2 exited with code 1; the other ranks were "
                 "stopped\n$")))
      << stopped.output;
  ASSERT_TRUE(std::filesystem::exists(dir / "resumed" / "checkpoint.pt"));
  auto resumed = run_qyolo(qat_args(dir / "resumed", 4));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_NE(resumed.output.find("at epoch 2"), std::string::npos) << resumed.output;
  const Graph start = load(dir / "straight" / "calibrated.onnx");
  EXPECT_LE(max_scaled_difference(load(dir / "resumed" / "qat.onnx"),
                                  load(dir / "straight" / "qat.onnx"), start),
            1e-5);
}

TEST(QatDistributed, OnlyRankZeroWrites) {
  if (!qat_distributed_available()) GTEST_SKIP() << "this LibTorch has no c10d";
  const auto dir = temp_dir();
  // Started as torchrun starts them, each with its own -o so that rank 1's is seen apart.
  const std::string env =
      "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(free_port());
  const std::string rank1 = env_run("RANK=1 " + env, qat_args(dir / "r1", 2));
  const std::string rank0 = env_run("RANK=0 " + env, qat_args(dir / "r0", 2));
  // Rank 1 in the background, its output aside; the status is rank 0's, then rank 1's.
  auto result = run_command(str_cat(rank1, " > ", (dir / "r1.log").string(), " 2>&1 & ", rank0,
                                    " && wait $!"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(read_text(dir / "r1.log"), "");  // rank 1 prints nothing
  for (const char* file : {"calibrated.onnx", "checkpoint.pt", "log.csv", "loss.png", "qat.onnx"}) {
    EXPECT_TRUE(std::filesystem::exists(dir / "r0" / file)) << file;
    EXPECT_FALSE(std::filesystem::exists(dir / "r1" / file)) << file;
  }
  EXPECT_NE(result.output.find("epoch   3 loss"), std::string::npos) << result.output;
}

TEST(QatDistributed, BadInputsAreOneLine) {
  const auto dir = temp_dir();
  auto world = run_command(env_run("WORLD_SIZE=2", qat_args(dir, 2)));
  EXPECT_EQ(world.exit_code, 1);
  EXPECT_EQ(world.output,
            "qyolo qat: error: WORLD_SIZE is set but RANK is not: torchrun sets both\n");
  auto zero = run_qyolo(qat_args(dir, 2) + " --nproc 0");
  EXPECT_EQ(zero.exit_code, 1);
  EXPECT_EQ(zero.output, "qyolo qat: error: --nproc 0: expected 1 or more processes\n");
  auto launched = run_command(env_run("RANK=0 WORLD_SIZE=1", qat_args(dir, 2) + " --nproc 2"));
  EXPECT_EQ(launched.exit_code, 1);
  EXPECT_EQ(launched.output,
            "qyolo qat: error: --nproc 2 with RANK/WORLD_SIZE set: a launcher such as torchrun "
            "already started the ranks; give one\n");
  if (!qat_distributed_available()) {
    auto two = run_qyolo(qat_args(dir, 2) + " --nproc 2");
    EXPECT_EQ(two.exit_code, 1);
    EXPECT_TRUE(
        std::regex_match(two.output, std::regex("qyolo qat: error: qyolo was built without "
                                                "distributed support .*scripts/setup.sh.*\n")))
        << two.output;
    auto rank = run_command(
        env_run("RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=1", qat_args(dir, 2)));
    EXPECT_EQ(rank.exit_code, 1);
    EXPECT_EQ(rank.output, two.output);
    return;
  }
  // Rank 1 of 2 with no rank 0 behind MASTER_PORT.
  const int port = free_port();
  auto unreachable = run_command(
      env_run("RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port),
              qat_args(dir, 2) + " --dist-timeout 2"));
  EXPECT_EQ(unreachable.exit_code, 1);
  EXPECT_EQ(unreachable.output.rfind("qyolo qat: error: rank 1 of 2: no rendezvous at 127.0.0.1:" +
                                         std::to_string(port) + " within 2 s",
                                     0),
            0u)
      << unreachable.output;
  EXPECT_EQ(std::count(unreachable.output.begin(), unreachable.output.end(), '\n'), 1)
      << unreachable.output;
}

}  // namespace
}  // namespace qyolo
