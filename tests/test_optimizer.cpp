#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "framework/core/cpu.hpp"
#include "framework/core/errors.hpp"
#include "framework/optimizer.hpp"
#include "framework/core/parallel.hpp"
#include "framework/core/rng.hpp"
#include "tests/isa_guard.hpp"

using namespace stride;

namespace {

// ---- Golden values from PyTorch 1.13 ---------------------------------------------------------------------
// Produced offline by this script (/usr/bin/python3, torch 1.13, torch.set_num_threads(1)); a parameter
// "fc/weight" of 19 floats (16 go through torch's vectorized loop, 3 through its scalar tail) and
// "fc/bias" of 5, stepped with the gradients kGrads and learning rates kLrs[s] at step s:
//
//   torch.manual_seed(0)
//   p0 = torch.rand(24) * 2 - 1; grads = [torch.rand(24) * 2 - 1 for _ in range(5)]; grads[0][3] = -0.0
//   w, b = p0[:19].clone().requires_grad_(), p0[19:].clone().requires_grad_()
//   groups = [{'params': [w]}, {'params': [b], 'weight_decay': 0.0}]  # "bias in a group with weight_decay=0"
//          # or [{'params': [w, b]}] otherwise
//   opt = torch.optim.SGD|Adam|AdamW(groups, lr=..., foreach=False, **kw)
//   for s in range(steps):
//       for g in opt.param_groups: g['lr'] = lrs[s]
//       w.grad, b.grad = grads[s][:19].clone(), grads[s][19:].clone(); opt.step()
//   print(torch.cat([w, b]), torch.cat([opt.state[w][key], opt.state[b][key]]) for each state key)
const std::vector<double> kLrs = {0.1, 0.05, 0.08, 0.02, 0.04};
const std::vector<float> kInitial = {-0.00748682022f, 0.536443591f, -0.823045135f, -0.735939026f, -0.385154366f, 0.268157363f, -0.01981318f, 0.792889476f, -0.0887440443f, 0.264612556f, -0.302213073f, -0.19656539f, -0.955348492f, -0.662282109f, -0.412223101f, 0.0370435715f, 0.395335197f, 0.600022793f, -0.677941084f, -0.435462832f, 0.363217115f, 0.83038795f, -0.205800176f, 0.748311758f};
const std::vector<std::vector<float>> kGrads = {
    {-0.161183357f, 0.105814099f, 0.905476213f, -0.0f, -0.62953794f, -0.253165245f, -0.389799953f, 0.864000797f, -0.64817965f, -0.46033287f, -0.698640466f, -0.936560988f, -0.583740473f, 0.859598041f, 0.446218371f, 0.484672546f, 0.0525915623f, -0.512683511f, 0.169184685f, -0.93369472f, -0.722566247f, -0.51552999f, 0.630937934f, 0.586321235f},
    {-0.443495035f, -0.036082387f, 0.639560699f, 0.994133115f, 0.396882176f, 0.135092854f, 0.670486331f, -0.588802338f, 0.186344028f, -0.77530551f, -0.693086147f, -0.516583562f, 0.452473044f, 0.402160406f, -0.592352509f, 0.302107096f, 0.548972011f, -0.126217365f, 0.0381815434f, 0.231704712f, 0.620376587f, 0.960194111f, -0.770623565f, -0.366469741f},
    {0.393009901f, 0.828549385f, 0.87020731f, 0.882356763f, 0.199014544f, -0.869582653f, 0.0919924974f, -0.625605345f, -0.931954145f, 0.888492465f, 0.760359764f, -0.997527957f, 0.187172055f, -0.168460011f, -0.164561152f, -0.457756877f, 0.384556174f, -0.592303514f, 0.366591334f, 0.505708098f, 0.715871572f, 0.373911142f, -0.989735246f, -0.648696899f},
    {0.499315023f, 0.209301353f, -0.780084014f, -0.575819492f, 0.940749288f, 0.673817873f, -0.436025143f, -0.251684785f, -0.952598095f, -0.0179741383f, -0.75305891f, -0.771356702f, -0.0550996065f, 0.150145054f, -0.409530282f, 0.59337759f, -0.608539104f, 0.90737009f, 0.685299873f, -0.843282938f, -0.24888432f, 0.0451226234f, 0.145901084f, 0.237174273f},
    {0.392428279f, 0.0599001646f, -0.487928748f, 0.473188996f, -0.9592489f, -0.59270668f, -0.250329852f, -0.487113357f, -0.349833369f, -0.819621682f, -0.212715149f, 0.213756442f, -0.651465774f, -0.0513193607f, 0.71585083f, -0.10280025f, 0.0277922153f, -0.0862689018f, 0.202381372f, 0.635839462f, 0.947246194f, 0.6350559f, 0.949413538f, -0.0723216534f},
};
// SgdPlain: SGD({'momentum': 0.0}), 3 steps
const std::vector<float> kSgdPlain_params = {-0.000634523749f, 0.461382329f, -1.01518738f, -0.856234193f, -0.357965857f, 0.35628587f, -0.0217169002f, 0.7859779f, 0.0413130485f, 0.278331727f, -0.258523494f, 0.00272212643f, -0.934571862f, -0.754873157f, -0.414062411f, 0.0100915106f, 0.331862956f, 0.704986274f, -0.726095974f, -0.394135237f, 0.347185194f, 0.804018378f, -0.151183948f, 0.759898841f};
// SgdMomentum: SGD({'momentum': 0.9}), 4 steps
const std::vector<float> kSgdMomentum_params = {0.0414692424f, 0.432303697f, -1.18428183f, -0.948282778f, -0.337066144f, 0.378035516f, -0.0253058374f, 0.746740401f, 0.141325235f, 0.38833648f, -0.109121703f, 0.198156878f, -0.904141486f, -0.897231042f, -0.406164885f, -0.0804658309f, 0.282151043f, 0.77240032f, -0.770811379f, -0.29067573f, 0.374432772f, 0.77581805f, -0.146793827f, 0.72622788f};
const std::vector<float> kSgdMomentum_momentum_buffer = {0.376290321f, 1.00290751f, 1.18123877f, 1.02354932f, 0.982403815f, -0.183938682f, -0.0943021476f, -0.661802888f, -2.11294127f, -0.181911066f, -1.13944376f, -2.77031732f, 0.0543116033f, 0.950927854f, -0.712147653f, 0.779429376f, 0.220568001f, -0.101685405f, 1.16949475f, -0.881128252f, 0.371154308f, 0.783578515f, -0.909111857f, -0.216065228f};
// SgdNesterovDecay: SGD({'momentum': 0.9, 'nesterov': True, 'weight_decay': 0.01}), 4 steps , bias in a group with weight_decay=0
const std::vector<float> kSgdNesterovDecay_params = {0.0332820788f, 0.359942585f, -1.31814921f, -1.03054225f, -0.331299365f, 0.4396424f, -0.0179744996f, 0.744624317f, 0.267482489f, 0.387738764f, -0.068308264f, 0.373791546f, -0.881246567f, -0.964026332f, -0.397380978f, -0.107345343f, 0.239660919f, 0.837403357f, -0.818595886f, -0.246961236f, 0.362256914f, 0.754002929f, -0.100996263f, 0.735279977f};
const std::vector<float> kSgdNesterovDecay_momentum_buffer = {0.377570182f, 1.0194416f, 1.14425015f, 0.994539201f, 0.97201103f, -0.172110319f, -0.0942338109f, -0.63783443f, -2.11081505f, -0.169299334f, -1.1447252f, -2.76819229f, 0.0239539221f, 0.92190969f, -0.72747612f, 0.777507365f, 0.231850326f, -0.0765746236f, 1.14450192f, -0.881128252f, 0.371154308f, 0.783578515f, -0.909111857f, -0.216065228f};
// SgdMomentumDecayAll: SGD({'momentum': 0.8, 'weight_decay': 0.05}), 4 steps
const std::vector<float> kSgdMomentumDecayAll_params = {0.0333010368f, 0.424324811f, -1.13462722f, -0.918486953f, -0.338852108f, 0.365698099f, -0.0263202582f, 0.742095113f, 0.127701446f, 0.363971502f, -0.126074091f, 0.171472639f, -0.891569436f, -0.857203662f, -0.393449724f, -0.0668433905f, 0.281945437f, 0.743887603f, -0.750473082f, -0.300084621f, 0.357524991f, 0.756920278f, -0.137941986f, 0.718348503f};
const std::vector<float> kSgdMomentumDecayAll_momentum_buffer = {0.451053441f, 0.97662735f, 0.643793643f, 0.647615552f, 0.983039141f, -0.0187606812f, -0.134185404f, -0.579567671f, -1.90958238f, 0.0104232486f, -0.97513485f, -2.3831346f, -0.0477810279f, 0.597970068f, -0.754996657f, 0.664726496f, 0.128411651f, 0.190636635f, 0.985728979f, -0.818822682f, 0.409550488f, 0.816696167f, -0.847770512f, -0.112111419f};
// Adam: Adam({}), 5 steps
const std::vector<float> kAdam_params = {0.126702324f, 0.324983567f, -1.06693864f, -0.869691849f, -0.288076699f, 0.448177695f, 0.0490990169f, 0.729188502f, 0.138966933f, 0.436974853f, -0.107048772f, 0.0777473897f, -0.847553432f, -0.884965837f, -0.471875787f, -0.148931995f, 0.176779449f, 0.817888021f, -0.937043428f, -0.300218105f, 0.41312921f, 0.846883833f, -0.249735773f, 0.675311208f};
const std::vector<float> kAdam_exp_avg = {0.0731089562f, 0.0962516814f, 0.0575186014f, 0.139438346f, -0.00750854611f, -0.0758251548f, -0.033520177f, -0.108273603f, -0.225148037f, -0.0983341634f, -0.123821445f, -0.227952927f, -0.0602585338f, 0.0804515779f, 0.00749179954f, 0.0598686226f, 0.0226303451f, -0.0177785717f, 0.125492662f, -0.0157175958f, 0.128128514f, 0.13402766f, 0.0131212845f, -0.0266780369f};
const std::vector<float> kAdam_exp_avg_sq = {0.000779188878f, 0.000744923076f, 0.00282616867f, 0.00231748051f, 0.0023955889f, 0.00164157234f, 0.00086058036f, 0.00178032613f, 0.00234880042f, 0.00227030041f, 0.0021538476f, 0.00277286326f, 0.0010059143f, 0.000950682734f, 0.00125516159f, 0.000896399666f, 0.00082153175f, 0.00145773939f, 0.000674207695f, 0.00229176646f, 0.00237433519f, 0.00172877952f, 0.00288884365f, 0.000957689539f};
// AdamL2: Adam({'betas': (0.8, 0.99), 'eps': 1e-06, 'weight_decay': 0.1}), 5 steps , bias in a group with weight_decay=0
const std::vector<float> kAdamL2_params = {0.112915963f, 0.29912442f, -1.05106461f, -0.76259172f, -0.286039174f, 0.433727056f, 0.0454255678f, 0.723391473f, 0.139376566f, 0.423731625f, -0.111671641f, 0.0743291676f, -0.819125056f, -0.854218543f, -0.4496952f, -0.137014717f, 0.170730188f, 0.797586262f, -0.900091469f, -0.312072158f, 0.400653273f, 0.838317871f, -0.243553042f, 0.68608737f};
const std::vector<float> kAdamL2_exp_avg = {0.157775998f, 0.182478771f, -0.0378455035f, 0.169289082f, -0.0466732383f, -0.103015013f, -0.0686250776f, -0.159570321f, -0.37233308f, -0.144167945f, -0.205232352f, -0.339814633f, -0.174364507f, 0.049874682f, 0.00112927752f, 0.0802979395f, 0.0337796025f, 0.0476498082f, 0.160135195f, 0.00421154406f, 0.24559325f, 0.238183096f, 0.0593153536f, -0.0490447134f};
const std::vector<float> kAdamL2_exp_avg_sq = {0.00796697941f, 0.00831555016f, 0.0265483987f, 0.0207360517f, 0.0239067972f, 0.0156809837f, 0.00849791802f, 0.0162690673f, 0.0229099821f, 0.0216471404f, 0.0218148734f, 0.0276461504f, 0.0114443209f, 0.00791358668f, 0.0126009248f, 0.00877744146f, 0.00844976865f, 0.0143000595f, 0.00462152576f, 0.0224848446f, 0.0233583841f, 0.016922269f, 0.0284116138f, 0.00933890883f};
// AdamW: AdamW({'weight_decay': 0.1}), 5 steps , bias in a group with weight_decay=0
const std::vector<float> kAdamW_params = {0.124336436f, 0.312134534f, -1.0402528f, -0.847619772f, -0.278978109f, 0.438103974f, 0.048137866f, 0.708285809f, 0.138910532f, 0.426761478f, -0.101106323f, 0.0802956596f, -0.822035134f, -0.863109112f, -0.458470911f, -0.147311211f, 0.168318495f, 0.797774136f, -0.914664268f, -0.300218105f, 0.41312921f, 0.846883833f, -0.249735773f, 0.675311208f};
const std::vector<float> kAdamW_exp_avg = {0.0731089562f, 0.0962516814f, 0.0575186014f, 0.139438346f, -0.00750854611f, -0.0758251548f, -0.033520177f, -0.108273603f, -0.225148037f, -0.0983341634f, -0.123821445f, -0.227952927f, -0.0602585338f, 0.0804515779f, 0.00749179954f, 0.0598686226f, 0.0226303451f, -0.0177785717f, 0.125492662f, -0.0157175958f, 0.128128514f, 0.13402766f, 0.0131212845f, -0.0266780369f};
const std::vector<float> kAdamW_exp_avg_sq = {0.000779188878f, 0.000744923076f, 0.00282616867f, 0.00231748051f, 0.0023955889f, 0.00164157234f, 0.00086058036f, 0.00178032613f, 0.00234880042f, 0.00227030041f, 0.0021538476f, 0.00277286326f, 0.0010059143f, 0.000950682734f, 0.00125516159f, 0.000896399666f, 0.00082153175f, 0.00145773939f, 0.000674207695f, 0.00229176646f, 0.00237433519f, 0.00172877952f, 0.00288884365f, 0.000957689539f};
// AdamWDecayAll: AdamW({'weight_decay': 0.5}), 3 steps
const std::vector<float> kAdamWDecayAll_params = {0.142875448f, 0.310597807f, -0.951396823f, -0.758458078f, -0.243804216f, 0.396790385f, 0.0363972522f, 0.624110162f, 0.0930184871f, 0.383380622f, -0.109487817f, 0.0418774039f, -0.760529757f, -0.773991108f, -0.42832455f, -0.121294215f, 0.149261624f, 0.739154518f, -0.803472281f, -0.269026697f, 0.388129115f, 0.779302835f, -0.226642966f, 0.590625286f};
const std::vector<float> kAdamWDecayAll_exp_avg = {-0.0136694154f, 0.0881784633f, 0.217924759f, 0.177707657f, 0.00462827971f, -0.0953062922f, 0.0379692279f, -0.0455686823f, -0.128927007f, -0.0182152148f, -0.0429316461f, -0.222106755f, 0.0121568041f, 0.0889758766f, -0.0336241573f, 0.0206724256f, 0.0921230167f, -0.112117276f, 0.0537994318f, -0.00420503831f, 0.0688931867f, 0.0820506588f, -0.117223673f, -0.0503599495f};
const std::vector<float> kAdamWDecayAll_exp_avg_sq = {0.000376876094f, 0.000698969001f, 0.00198413804f, 0.00176586595f, 0.000592490542f, 0.000838370412f, 0.000609205337f, 0.00148272875f, 0.00132252497f, 0.00160139927f, 0.00154515787f, 0.00213704701f, 0.000579632353f, 0.000927381858f, 0.00057632383f, 0.000535156694f, 0.000451712724f, 0.000629057351f, 0.000164411831f, 0.00117941725f, 0.00141801278f, 0.00132610032f, 0.00197012979f, 0.000898058875f};

constexpr int64_t kWeightSize = 19, kBiasSize = 5, kTotal = kWeightSize + kBiasSize;

std::vector<OptimizerParam> fc_params() {
  return {{"fc/weight", 0, kWeightSize, true}, {"fc/bias", kWeightSize, kBiasSize, false}};
}

// Distance in units in the last place between two floats (0 for +0 vs -0).
int64_t ulp_distance(float a, float b) {
  auto ordered = [](float f) {
    int32_t i;
    std::memcpy(&i, &f, sizeof i);
    return i < 0 ? int64_t{INT32_MIN} - i : int64_t{i};
  };
  const int64_t d = ordered(a) - ordered(b);
  return d < 0 ? -d : d;
}

void check_ulps(std::span<const float> got, const std::vector<float>& expected, int64_t max_ulps,
                const std::string& what) {
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    INFO(what << "[" << i << "]: got " << got[i] << ", torch " << expected[i]);
    CHECK(ulp_distance(got[i], expected[i]) <= max_ulps);
  }
}

// Steps a fresh optimizer over the golden gradients and learning rates.
std::unique_ptr<Optimizer> run_golden(const OptimizerOptions& options, int steps, std::vector<float>& params) {
  auto opt = Optimizer::create(options, fc_params(), kTotal);
  params = kInitial;
  for (int s = 0; s < steps; ++s) opt->step(params, kGrads[static_cast<size_t>(s)], kLrs[static_cast<size_t>(s)]);
  CHECK(opt->step_count() == steps);
  return opt;
}

// Our arithmetic follows torch's operation order and fusions exactly (see optimizer.cpp), so results are
// compared bit for bit (0 ulp) in torch's vectorized part and its scalar tail alike.
constexpr int64_t kUlps = 0;

}  // namespace

TEST_CASE("sgd matches torch.optim.SGD element for element") {
  std::vector<float> p;
  SUBCASE("plain (momentum 0) has no state") {
    OptimizerOptions o;
    o.momentum = 0.0;
    auto opt = run_golden(o, 3, p);
    check_ulps(p, kSgdPlain_params, kUlps, "params");
    CHECK(opt->slot_names().empty());
  }
  SUBCASE("momentum: buffer starts as the first gradient") {
    OptimizerOptions o;
    o.momentum = 0.9;
    auto opt = run_golden(o, 4, p);
    check_ulps(p, kSgdMomentum_params, kUlps, "params");
    check_ulps(opt->slot(0), kSgdMomentum_momentum_buffer, kUlps, "momentum_buffer");
  }
  SUBCASE("nesterov with weight decay, bias not decayed (decay_all false)") {
    OptimizerOptions o;
    o.momentum = 0.9;
    o.nesterov = true;
    o.weight_decay = 0.01;
    o.decay_all = false;
    auto opt = run_golden(o, 4, p);
    check_ulps(p, kSgdNesterovDecay_params, kUlps, "params");
    check_ulps(opt->slot(0), kSgdNesterovDecay_momentum_buffer, kUlps, "momentum_buffer");
  }
  SUBCASE("weight decay on every parameter (decay_all true, the default)") {
    OptimizerOptions o;
    o.momentum = 0.8;
    o.weight_decay = 0.05;
    CHECK(o.decay_all);
    auto opt = run_golden(o, 4, p);
    check_ulps(p, kSgdMomentumDecayAll_params, kUlps, "params");
    check_ulps(opt->slot(0), kSgdMomentumDecayAll_momentum_buffer, kUlps, "momentum_buffer");
  }
}

TEST_CASE("a parameter flagged weight_decay=false is untouched by decay when decay_all is false") {
  // With a zero gradient only the decay term could move a parameter. lr 1e-3 keeps Adam's ~lr-sized steps
  // from overshooting zero on the smallest weight (|p| = 0.0075).
  const std::vector<float> zeros(kTotal, 0.0f);
  for (const char* kind : {"sgd", "adam", "adamw"}) {
    OptimizerOptions o;
    o.kind = kind;
    o.weight_decay = 0.1;
    o.decay_all = false;
    auto opt = Optimizer::create(o, fc_params(), kTotal);
    std::vector<float> p = kInitial;
    for (int s = 0; s < 3; ++s) opt->step(p, zeros, 1e-3);
    for (int64_t i = 0; i < kTotal; ++i) {
      INFO(kind << " element " << i);
      if (i < kWeightSize) CHECK(std::abs(p[i]) < std::abs(kInitial[i]));  // decayed towards 0
      else CHECK(p[i] == kInitial[i]);                                      // bias: exactly unchanged
    }
  }
}

TEST_CASE("adam and adamw match torch.optim.Adam and torch.optim.AdamW element for element") {
  std::vector<float> p;
  SUBCASE("adam, defaults") {
    OptimizerOptions o;
    o.kind = "adam";
    auto opt = run_golden(o, 5, p);
    check_ulps(p, kAdam_params, kUlps, "params");
    check_ulps(opt->slot(0), kAdam_exp_avg, kUlps, "exp_avg");
    check_ulps(opt->slot(1), kAdam_exp_avg_sq, kUlps, "exp_avg_sq");
  }
  SUBCASE("adam, L2 weight decay skipped for the bias, betas (0.8, 0.99), eps 1e-6") {
    OptimizerOptions o;
    o.kind = "adam";
    o.beta1 = 0.8;
    o.beta2 = 0.99;
    o.eps = 1e-6;
    o.weight_decay = 0.1;
    o.decay_all = false;
    auto opt = run_golden(o, 5, p);
    check_ulps(p, kAdamL2_params, kUlps, "params");
    check_ulps(opt->slot(0), kAdamL2_exp_avg, kUlps, "exp_avg");
    check_ulps(opt->slot(1), kAdamL2_exp_avg_sq, kUlps, "exp_avg_sq");
  }
  SUBCASE("adamw, decoupled decay skipped for the bias") {
    OptimizerOptions o;
    o.kind = "adamw";
    o.weight_decay = 0.1;
    o.decay_all = false;
    auto opt = run_golden(o, 5, p);
    check_ulps(p, kAdamW_params, kUlps, "params");
    check_ulps(opt->slot(0), kAdamW_exp_avg, kUlps, "exp_avg");
    check_ulps(opt->slot(1), kAdamW_exp_avg_sq, kUlps, "exp_avg_sq");
  }
  SUBCASE("adamw, decoupled decay on every parameter") {
    OptimizerOptions o;
    o.kind = "adamw";
    o.weight_decay = 0.5;
    auto opt = run_golden(o, 3, p);
    check_ulps(p, kAdamWDecayAll_params, kUlps, "params");
    check_ulps(opt->slot(0), kAdamWDecayAll_exp_avg, kUlps, "exp_avg");
    check_ulps(opt->slot(1), kAdamWDecayAll_exp_avg_sq, kUlps, "exp_avg_sq");
  }
}

TEST_CASE("slots share the flat parameter layout; elements outside every parameter are left alone") {
  // Two parameters with a gap [5, 8) and a tail [12, 14) that belong to no parameter (e.g. state).
  const std::vector<OptimizerParam> params = {{"conv/weight", 0, 5, true}, {"conv/bias", 8, 4, false}};
  OptimizerOptions o;
  o.kind = "adam";
  auto opt = Optimizer::create(o, params, 14);
  CHECK(opt->kind() == "adam");
  REQUIRE(opt->slot_names() == std::vector<std::string>{"exp_avg", "exp_avg_sq"});
  CHECK(opt->slot(0).size() == 14);
  CHECK(opt->slot(1).size() == 14);
  CHECK_THROWS_AS(opt->slot(2), ConfigError);
  std::vector<float> p(14, 0.5f), g(14);
  for (size_t i = 0; i < g.size(); ++i) g[i] = 0.1f * static_cast<float>(i + 1);
  opt->step(p, g, 0.01);
  for (size_t i = 0; i < 14; ++i) {
    const bool owned = i < 5 || (i >= 8 && i < 12);
    INFO("element " << i);
    CHECK((p[i] != 0.5f) == owned);
    // After one Adam step exp_avg = (1 - beta1) g and exp_avg_sq = (1 - beta2) g^2 for owned elements.
    CHECK(opt->slot(0)[i] == (owned ? static_cast<float>(1.0 - 0.9) * g[i] : 0.0f));
    CHECK(opt->slot(1)[i] == (owned ? static_cast<float>(1.0 - 0.999) * g[i] * g[i] : 0.0f));
  }
  // slot(i).subspan(offset, size) is parameter p's state, as the checkpoint writer addresses it.
  const auto bias_avg = opt->slot(0).subspan(8, 4);
  CHECK(bias_avg[0] == static_cast<float>(1.0 - 0.9) * g[8]);

  OptimizerOptions sgd;
  sgd.kind = "sgd";
  CHECK(Optimizer::create(sgd, params, 14)->slot_names() == std::vector<std::string>{"momentum_buffer"});
  sgd.momentum = 0.0;
  CHECK(Optimizer::create(sgd, params, 14)->slot_names().empty());
  OptimizerOptions adamw;
  adamw.kind = "adamw";
  CHECK(Optimizer::create(adamw, params, 14)->kind() == "adamw");
}

TEST_CASE("restoring slots and step count resumes bit-identically") {
  for (const char* kind : {"sgd", "adam", "adamw"}) {
    OptimizerOptions o;
    o.kind = kind;
    o.nesterov = true;
    o.weight_decay = 0.01;
    auto straight = Optimizer::create(o, fc_params(), kTotal);
    std::vector<float> p1 = kInitial;
    for (size_t s = 0; s < 5; ++s) straight->step(p1, kGrads[s], kLrs[s]);

    // Run 2 steps, "checkpoint" params + slots + step count, restore into a fresh optimizer, run 3 more.
    auto first = Optimizer::create(o, fc_params(), kTotal);
    std::vector<float> p2 = kInitial;
    for (size_t s = 0; s < 2; ++s) first->step(p2, kGrads[s], kLrs[s]);
    auto resumed = Optimizer::create(o, fc_params(), kTotal);
    for (size_t i = 0; i < resumed->slot_names().size(); ++i) {
      auto src = first->slot(i);
      std::copy(src.begin(), src.end(), resumed->slot(i).begin());
    }
    resumed->set_step_count(first->step_count());
    for (size_t s = 2; s < 5; ++s) resumed->step(p2, kGrads[s], kLrs[s]);

    INFO(kind);
    CHECK(resumed->step_count() == 5);
    CHECK(std::memcmp(p1.data(), p2.data(), p1.size() * sizeof(float)) == 0);
    for (size_t i = 0; i < straight->slot_names().size(); ++i)
      CHECK(std::memcmp(straight->slot(i).data(), resumed->slot(i).data(), kTotal * sizeof(float)) == 0);
  }
}

TEST_CASE("the update is bit-identical at 1, 2 and 4 threads and on every kernel path, on 100k elements") {
  // Sizes chosen so blocks end mid-vector and parameters start at odd offsets.
  const std::vector<OptimizerParam> params = {
      {"conv1/weight", 0, 60001, true}, {"conv1/bias", 60001, 3, false}, {"fc/weight", 60004, 39996, true}};
  const int64_t total = 100000;
  std::vector<float> p0(total), grads(3 * total);
  RandomStream rng(5, 1u, 0, 0);
  for (int64_t i = 0; i < total; ++i) p0[i] = rng.uniform(static_cast<uint64_t>(i), -1.0f, 1.0f);
  for (int64_t i = 0; i < 3 * total; ++i) grads[i] = rng.uniform(static_cast<uint64_t>(total + i), -1.0f, 1.0f);

  for (const char* kind : {"sgd", "adam", "adamw"}) {
    OptimizerOptions o;
    o.kind = kind;
    o.nesterov = true;
    o.weight_decay = 1e-3;
    o.decay_all = false;
    std::vector<std::vector<float>> results;
    test::IsaGuard guard;
    // SGD's update is a kernel (kernels::SgdStep): the portable path (scalar fmaf) against the vector ones.
    for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512, Isa::avx512bf16}) {
      if (!isa_supported(isa)) continue;
      set_isa(isa);
      for (int threads : {1, 2, 4}) {
        ThreadLimit limit(threads);
        auto opt = Optimizer::create(o, params, total);
        std::vector<float> p = p0;
        for (int s = 0; s < 3; ++s)
          opt->step(p, std::span<const float>(grads).subspan(static_cast<size_t>(s * total), total), 0.01);
        for (size_t i = 0; i < opt->slot_names().size(); ++i)
          p.insert(p.end(), opt->slot(i).begin(), opt->slot(i).end());
        results.push_back(std::move(p));
      }
    }
    CHECK(results.size() >= 6);  // the portable path and at least one vector path
    INFO(kind);
    // The parameters moved (a no-op update would pass the identity check trivially).
    CHECK(std::memcmp(results[0].data(), p0.data(), p0.size() * sizeof(float)) != 0);
    for (size_t t = 1; t < results.size(); ++t) {
      REQUIRE(results[t].size() == results[0].size());
      CHECK(std::memcmp(results[t].data(), results[0].data(), results[0].size() * sizeof(float)) == 0);
    }
  }
}

namespace {
// Expects create() to throw ConfigError whose message contains `text`.
void check_create_throws(const OptimizerOptions& o, const std::string& text,
                         std::vector<OptimizerParam> params = fc_params(), int64_t total = kTotal) {
  try {
    Optimizer::create(o, std::move(params), total);
    FAIL("no ConfigError for: " << text);
  } catch (const ConfigError& e) {
    INFO(e.what());
    CHECK(std::string(e.what()).find(text) != std::string::npos);
    CHECK(std::string(e.what()).rfind("optimizer: ", 0) == 0);
  }
}
}  // namespace

TEST_CASE("invalid options and parameter ranges throw ConfigError naming the field and value") {
  OptimizerOptions o;
  o.kind = "rmsprop";
  check_create_throws(o, "unknown kind 'rmsprop' (expected sgd, adam or adamw)");
  o = {};
  o.momentum = -0.5;
  check_create_throws(o, "expected momentum >= 0, got -0.5");
  o = {};
  o.momentum = 0.0;
  o.nesterov = true;
  check_create_throws(o, "nesterov requires momentum > 0, got momentum 0");
  o = {};
  o.weight_decay = -1e-4;
  check_create_throws(o, "expected weight_decay >= 0, got -0.0001");
  o = {};
  o.kind = "adam";
  o.beta1 = 1.0;
  check_create_throws(o, "expected beta1 in [0, 1), got 1");
  o.beta1 = 0.9;
  o.beta2 = -0.1;
  check_create_throws(o, "expected beta2 in [0, 1), got -0.1");
  o.beta2 = 0.999;
  o.eps = -1.0;
  check_create_throws(o, "expected eps >= 0, got -1");

  check_create_throws({}, "parameter 'fc/bias' range [19, 24) is outside the buffer of 20 floats", fc_params(), 20);
  check_create_throws({}, "parameters 'a/w' [0, 10) and 'b/w' [5, 15) overlap",
                      {{"b/w", 5, 10, true}, {"a/w", 0, 10, true}}, 20);
  check_create_throws({}, "parameter name 'a/w' appears twice", {{"a/w", 0, 5, true}, {"a/w", 5, 5, true}}, 20);

  auto opt = Optimizer::create({}, fc_params(), kTotal);
  std::vector<float> p(kTotal), g(kTotal), short_buffer(kTotal - 1);
  try {
    opt->step(p, g, -0.1);
    FAIL("no throw");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()) == "optimizer: expected lr >= 0, got -0.1");
  }
  try {
    opt->step(p, short_buffer, 0.1);
    FAIL("no throw");
  } catch (const ShapeError& e) {
    CHECK(std::string(e.what()) == "optimizer: expected parameter and gradient buffers of 24 floats, got 24 and 23");
  }
  CHECK(opt->step_count() == 0);  // a rejected step changes nothing
  CHECK_THROWS_AS(opt->set_step_count(-1), ConfigError);
}
