#include <doctest/doctest.h>

#include <cstring>
#include <string>
#include <vector>

#include "framework/core/errors.hpp"
#include "framework/core/layer_config.hpp"
#include "framework/core/parallel.hpp"
#include "layers/add.hpp"
#include "tests/gradcheck.hpp"

using namespace stride;
using stride::test::random_tensor;
using stride::test::tensor_from;

TEST_CASE("add: y = a + b, and backward copies dy into both input gradients") {
  Add add("add1");
  CHECK(add.type() == "add");
  CHECK(add.input_count() == 2);
  CHECK(add.output_shape(Shape{2, 3, 4, 4}) == Shape{2, 3, 4, 4});
  CHECK(add.param_specs(Shape{2, 3, 4, 4}).empty());
  const Tensor a = tensor_from(Shape{1, 2, 1, 2}, {1.0f, -2.0f, 0.5f, 4.0f});
  const Tensor b = tensor_from(Shape{1, 2, 1, 2}, {0.25f, 2.0f, -1.5f, 8.0f});
  Tensor y;
  add.forward2(a, b, y, RunContext{});
  REQUIRE(y.shape() == a.shape());
  const std::vector<float> expected = {1.25f, 0.0f, -1.0f, 12.0f};
  for (int64_t i = 0; i < 4; ++i) CHECK(y[i] == expected[static_cast<size_t>(i)]);

  const Tensor dy = tensor_from(Shape{1, 2, 1, 2}, {0.1f, -0.2f, 0.3f, -0.4f});
  Tensor da(Shape{3}, 9.0f), db(Shape{1, 2, 1, 2}, 9.0f);  // stale contents and shape must be overwritten
  add.backward2(dy, &da, &db, RunContext{});
  REQUIRE(da.shape() == dy.shape());
  REQUIRE(db.shape() == dy.shape());
  for (int64_t i = 0; i < 4; ++i) {
    CHECK(da[i] == dy[i]);
    CHECK(db[i] == dy[i]);
  }
  Tensor only;
  add.backward2(dy, nullptr, &only, RunContext{});  // either gradient may be skipped
  CHECK(only[3] == -0.4f);

  // The one-input passes are refused: the network must call forward2/backward2.
  CHECK_THROWS_AS(add.forward(a, y, RunContext{}), Error);
}

TEST_CASE("add: check_inputs and forward2 throw ShapeError naming the layer and both shapes") {
  Add add("res1_add");
  add.check_inputs(Shape{2, 16, 8, 8}, Shape{2, 16, 8, 8});
  try {
    add.check_inputs(Shape{2, 16, 8, 8}, Shape{2, 32, 4, 4});
    FAIL("no throw");
  } catch (const ShapeError& e) {
    CHECK(std::string(e.what()) ==
          "res1_add: expected two inputs of the same shape, got (N=2, C=16, H=8, W=8) and (N=2, C=32, H=4, W=4)");
  }
  Tensor y;
  CHECK_THROWS_AS(add.forward2(Tensor(Shape{2, 3}), Tensor(Shape{3, 2}), y, RunContext{}), ShapeError);
  CHECK(Add::from_config(LayerConfig::parse(R"({"name": "a", "type": "add", "inputs": ["x", "y"]})"))->type() == "add");
  CHECK_THROWS_AS(Add::from_config(LayerConfig::parse(R"({"name": "a", "type": "add", "scale": 2})")), ConfigError);
}

TEST_CASE("add: bit-identical for 1, 2 and 4 threads") {
  const Tensor a = random_tensor(Shape{8, 16, 16, 16}, 71), b = random_tensor(Shape{8, 16, 16, 16}, 72);
  std::vector<Tensor> ys;
  for (int threads : {1, 2, 4}) {
    ThreadLimit limit(threads);
    Add add("add1");
    Tensor y;
    add.forward2(a, b, y, RunContext{});
    ys.push_back(y);
  }
  for (size_t t = 1; t < ys.size(); ++t)
    CHECK(std::memcmp(ys[0].data(), ys[t].data(), static_cast<size_t>(a.numel()) * 4) == 0);
  for (int64_t i = 0; i < a.numel(); i += 97) CHECK(ys[0][i] == a[i] + b[i]);
}
