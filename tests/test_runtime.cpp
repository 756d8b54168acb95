// The runtime API on the cpu target: fences from plain threads, standalone tasks chained by
// fences alone, several module instances at once giving identical results, and the errors a
// caller can make (bad task, hybrid mode without CUDA, the cuda target without QYOLO_CUDA).
#include <gtest/gtest.h>

#include <thread>

#include "engine_test_graphs.h"
#include "qyolo/runtime.h"

namespace qyolo {
namespace {

using runtime::Device;
using runtime::Fence;
using runtime::FencePtr;
using runtime::Module;

Engine small_engine(int max_batch = 1) {
  testing::GraphMaker m = testing::yolo_like();
  BuildOptions o;
  o.scales = m.scales();
  o.input_format = IoFormat::kInt8Hwc4;
  o.output_format = IoFormat::kInt8Chw32;
  o.max_batch = max_batch;
  return build_engine(m.graph, o).value().engine;
}

// One module's I/O memory, registered with its device.
struct Io {
  std::vector<uint8_t> input, output;
  std::vector<std::unique_ptr<runtime::RegisteredMemory>> memory;
  runtime::Task task;
  Io(Device& device, Module& module, int batch, uint32_t seed) {
    const EngineIo& in = module.inputs()[0];
    const EngineIo& out = module.outputs()[0];
    input.resize(size_t(in.image_bytes()) * batch);
    output.resize(size_t(out.image_bytes()) * batch);
    for (int n = 0; n < batch; ++n) {
      const Tensor image = testing::random_image(3, 32, seed + n);
      runtime::pack_input(in, 1, image.data<float>(), input.data() + n * in.image_bytes());
    }
    memory.push_back(std::move(device.register_memory(input.data(), input.size()).value()));
    memory.push_back(std::move(device.register_memory(output.data(), output.size()).value()));
    task.module = &module;
    task.batch = batch;
    task.inputs = {memory[0].get()};
    task.outputs = {memory[1].get()};
  }
};

TEST(Runtime, FenceSignalsWaitersAndCallbacksOnce) {
  FencePtr f = Fence::create();
  EXPECT_FALSE(f->signaled());
  EXPECT_FALSE(f->wait_for(std::chrono::milliseconds(1)));
  int called = 0;
  f->on_signal([&] { ++called; });
  std::thread t([&] { f->signal(internal_error("boom")); });
  EXPECT_EQ(f->wait().message(), "boom");
  t.join();
  f->signal(Status::ok());  // ignored: the first status wins
  EXPECT_EQ(f->wait().message(), "boom");
  f->on_signal([&] { ++called; });  // already signalled: runs at once
  EXPECT_EQ(called, 2);
  f->reset();
  EXPECT_FALSE(f->signaled());
}

// A pipeline of plain threads: each submits its stage waiting on the previous stage's fence
// and signalling its own; only the last fence is waited on. Every stage's output equals the
// synchronous run of the same task.
TEST(Runtime, ThreadsChainTasksThroughFencesAlone) {
  auto device = Device::create(EngineTarget::kCpu, {0, 2});
  ASSERT_TRUE(device) << device.status().message();
  const Engine engine = small_engine();
  constexpr int kStages = 4;
  std::vector<std::unique_ptr<Module>> modules;
  std::vector<std::unique_ptr<Io>> io;
  for (int s = 0; s < kStages; ++s) {
    modules.push_back(std::move(Module::from_engine(**device, engine).value()));
    io.push_back(std::make_unique<Io>(**device, *modules.back(), 1, 10 + s));
  }
  std::vector<FencePtr> fences;
  for (int s = 0; s <= kStages; ++s) fences.push_back(Fence::create());
  std::vector<std::thread> threads;
  for (int s = kStages - 1; s >= 0; --s)  // submitted out of order on purpose
    threads.emplace_back([&, s] {
      Status st = (*device)->submit(io[s]->task, {fences[s]}, {fences[s + 1]});
      EXPECT_TRUE(st.is_ok()) << st.message();
    });
  for (auto& t : threads) t.join();
  EXPECT_FALSE(fences[kStages]->wait_for(std::chrono::milliseconds(20)));  // gated by fence 0
  fences[0]->signal();
  ASSERT_TRUE(fences[kStages]->wait().is_ok());
  for (int s = 0; s < kStages; ++s) {
    const std::vector<uint8_t> chained = io[s]->output;
    std::fill(io[s]->output.begin(), io[s]->output.end(), uint8_t{0});
    ASSERT_TRUE((*device)->run(io[s]->task).is_ok());
    EXPECT_EQ(chained, io[s]->output) << "stage " << s;
  }
}

TEST(Runtime, InstancesRunningAtOnceGiveIdenticalResults) {
  auto device = Device::create(EngineTarget::kCpu, {0, 3});
  ASSERT_TRUE(device);
  const Engine engine = small_engine(2);
  std::vector<std::unique_ptr<Module>> modules;
  std::vector<std::unique_ptr<Io>> io;
  for (int i = 0; i < 3; ++i) {
    modules.push_back(std::move(Module::from_engine(**device, engine).value()));
    io.push_back(std::make_unique<Io>(**device, *modules.back(), 2, 42));  // the same images
  }
  for (int round = 0; round < 3; ++round) {
    std::vector<FencePtr> done;
    for (int i = 0; i < 3; ++i) {
      done.push_back(Fence::create());
      ASSERT_TRUE((*device)->submit(io[i]->task, {}, {done.back()}).is_ok());
    }
    for (auto& f : done) ASSERT_TRUE(f->wait().is_ok());
    EXPECT_EQ(io[0]->output, io[1]->output);
    EXPECT_EQ(io[0]->output, io[2]->output);
  }
  // Image 1 of the batch is a different image, and batch 2 equals two batch-1 runs.
  const size_t half = io[0]->output.size() / 2;
  EXPECT_NE(std::vector<uint8_t>(io[0]->output.begin(), io[0]->output.begin() + half),
            std::vector<uint8_t>(io[0]->output.begin() + half, io[0]->output.end()));
  Io single(**device, *modules[0], 1, 43);
  ASSERT_TRUE((*device)->run(single.task).is_ok());
  EXPECT_EQ(single.output, std::vector<uint8_t>(io[0]->output.begin() + half, io[0]->output.end()));
  (*device)->synchronize();
}

TEST(Runtime, AnUpstreamErrorSkipsTheTaskAndTravelsOn) {
  auto device = Device::create(EngineTarget::kCpu);
  ASSERT_TRUE(device);
  auto module = Module::from_engine(**device, small_engine());
  ASSERT_TRUE(module);
  Io io(**device, **module, 1, 1);
  FencePtr in = Fence::create(), out = Fence::create();
  ASSERT_TRUE((*device)->submit(io.task, {in}, {out}).is_ok());
  in->signal(io_error("camera unplugged"));
  EXPECT_EQ(out->wait().message(), "camera unplugged");
  EXPECT_EQ(io.output, std::vector<uint8_t>(io.output.size(), 0));
}

TEST(Runtime, ATaskWaitingWhenTheDeviceGoesFailsItsFence) {
  FencePtr in = Fence::create(), out = Fence::create();
  const Engine engine = small_engine();
  {
    auto device = Device::create(EngineTarget::kCpu);
    ASSERT_TRUE(device);
    auto module = Module::from_engine(**device, engine);
    ASSERT_TRUE(module);
    Io io(**device, **module, 1, 1);
    ASSERT_TRUE((*device)->submit(io.task, {in}, {out}).is_ok());
    device->reset();  // the module and memory are never touched: the task cannot start
  }
  in->signal();
  EXPECT_NE(out->wait().message().find("destroyed"), std::string::npos);
}

TEST(Runtime, BadTasksAndTargetsAreClearErrors) {
  auto device = Device::create(EngineTarget::kCpu);
  ASSERT_TRUE(device);
  auto module = Module::from_engine(**device, small_engine());
  ASSERT_TRUE(module);
  Io io(**device, **module, 1, 1);
  runtime::Task task = io.task;
  task.batch = 2;
  EXPECT_NE((*device)->run(task).message().find("batch 2 outside 1..1"), std::string::npos);
  task = io.task;
  std::vector<uint8_t> small(10);
  auto tiny = (*device)->register_memory(small.data(), small.size());
  task.outputs = {tiny->get()};
  EXPECT_NE((*device)->run(task).message().find("has 10 bytes"), std::string::npos);
  int stream = 0;
  EXPECT_NE((*device)->submit(io.task, &stream).message().find("hybrid submission needs a CUDA"),
            std::string::npos);
  // Without QYOLO_CUDA or without a GPU the cuda target is a one-line refusal; with both it
  // exists (tests/cuda covers it).
  auto cuda = Device::create(EngineTarget::kCuda);
  if (!cuda)
    EXPECT_EQ(cuda.status().message().rfind("target cuda: ", 0), 0u) << cuda.status().message();
  Engine for_cuda = small_engine();
  for_cuda.target = EngineTarget::kCuda;
  const auto bytes = serialize_engine(for_cuda);
  auto wrong = Module::load(**device, bytes.data(), bytes.size(), "cuda.engine");
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.status().message().find("built for target cuda, this device is cpu"),
            std::string::npos);
}

}  // namespace
}  // namespace qyolo
