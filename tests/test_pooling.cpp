#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "framework/core/cpu.hpp"
#include "framework/core/errors.hpp"
#include "framework/core/layer_config.hpp"
#include "framework/core/parallel.hpp"
#include "layers/avg_pool2d.hpp"
#include "layers/global_avg_pool2d.hpp"
#include "layers/lp_pool2d.hpp"
#include "layers/max_pool2d.hpp"
#include "tests/gradcheck.hpp"
#include "tests/isa_guard.hpp"

using namespace stride;
using namespace stride::test;

namespace {

// Golden values from PyTorch 1.13 (torch.set_num_threads(1)), produced by this script:
//   A = torch.tensor([((i * 37) % 98 - 49) * 0.125 for i in range(98)]).reshape(1, 2, 7, 7)  # distinct
//   B = torch.tensor([((i * 37) % 98 + 1) * 0.0625 for i in range(98)]).reshape(1, 2, 7, 7)  # positive
//   DY(shape) = torch.tensor([((j * 13) % 17 - 8) * 0.25 for j in range(numel)]).reshape(shape)
//   for each case: x.requires_grad_(); y = f(x); y.backward(DY(y.shape)); print y and x.grad
// with f:
//   max_k3s3_ceil        F.max_pool2d(A, 3, 3, 0, ceil_mode=True)
//   max_k2s2p1_ceil      F.max_pool2d(A, 2, 2, 1, ceil_mode=True)
//   avg_k4s3p1_ceil_incl F.avg_pool2d(A, 4, 3, 1, ceil_mode=True, count_include_pad=True)
//   avg_k4s3p1_ceil_excl F.avg_pool2d(A, 4, 3, 1, ceil_mode=True, count_include_pad=False)
//   lp2_k3s3_ceil        F.lp_pool2d(B, 2.0, 3, 3, ceil_mode=True)
//   lp3_k3s3_ceil        F.lp_pool2d(B, 3.0, 3, 3, ceil_mode=True)
//   lp2_k3s2p1           F.avg_pool2d(B.pow(2.0), 3, 2, 1, count_include_pad=True).mul(9).pow(0.5)
//                        (lp_pool2d's own formula, with the padding torch's lp_pool2d does not offer)
//   gap                  F.adaptive_avg_pool2d(B, 1)
namespace golden {
// max_k3s3_ceil_y (1, 2, 3, 3)
const std::vector<float> max_k3s3_ceil_y = {
    3.125f, 4.75f, 5.0f, 5.75f, 3.875f, 4.125f, 4.375f, 6.0f, -4.625f, 4.875f,
    5.125f, 3.25f, 4.0f, 5.625f, 5.875f, 2.875f, 4.5f, 1.5f};
// max_k3s3_ceil_dx (1, 2, 7, 7)
const std::vector<float> max_k3s3_ceil_dx = {
    0.0f, 0.0f, -2.0f, 0.0f, 0.0f, 1.25f, 0.0f, 0.0f, 0.0f, 0.0f,
    0.0f, 0.0f, 0.0f, 0.25f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f,
    0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, -1.75f, 0.0f, 0.0f, 0.0f,
    0.0f, 0.0f, 0.0f, 0.0f, 1.5f, 0.0f, 0.0f, -0.75f, 0.0f, 0.0f,
    0.0f, 0.0f, 0.5f, 0.0f, 0.0f, -0.5f, 0.0f, 0.0f, -1.5f, 0.0f,
    0.0f, 0.0f, 0.0f, 0.0f, 0.0f, -0.25f, 0.0f, 0.0f, 1.75f, 0.0f,
    0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.75f, 0.0f, 0.0f, 0.0f,
    0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, -1.25f,
    0.0f, 0.0f, 2.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f,
    1.0f, 0.0f, 0.0f, 0.0f, 0.0f, -1.0f, 0.0f, -2.0f};
// max_k2s2p1_ceil_y (1, 2, 4, 4)
const std::vector<float> max_k2s2p1_ceil_y = {
    -6.125f, 3.125f, 0.125f, 4.75f, 1.75f, 2.0f, 3.625f, 5.0f, 5.25f, 5.5f,
    2.5f, 4.125f, 4.375f, 5.75f, 6.0f, 3.0f, 0.0f, 4.625f, 1.625f, 3.25f,
    3.5f, 4.875f, 5.125f, 2.125f, -0.875f, 4.0f, 5.375f, 5.625f, 2.625f, 2.875f,
    4.5f, 5.875f};
// max_k2s2p1_ceil_dx (1, 2, 7, 7)
const std::vector<float> max_k2s2p1_ceil_dx = {
    -2.0f, 0.0f, 1.25f, 0.0f, 0.25f, -0.75f, 0.0f, -1.75f, 0.0f, 0.0f,
    0.0f, 0.0f, 0.0f, -0.5f, 0.0f, 1.5f, 0.0f, 0.0f, 0.5f, 0.0f,
    0.0f, -1.5f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 1.75f,
    0.0f, 0.75f, 0.0f, 0.0f, -0.25f, 0.0f, 0.0f, 2.0f, 0.0f, 0.0f,
    0.0f, 0.0f, -1.25f, 0.0f, 0.0f, 1.0f, 0.0f, 0.0f, 0.0f, -1.0f,
    -2.0f, 0.0f, 1.25f, 0.0f, 0.0f, 0.25f, 0.0f, 0.0f, -1.75f, 0.0f,
    0.0f, 0.0f, 0.0f, -0.75f, 0.0f, 0.0f, 1.5f, 0.0f, 0.5f, 0.0f,
    -0.5f, 0.0f, 0.0f, 0.0f, 1.75f, 0.0f, 0.0f, 0.0f, 0.0f, -1.5f,
    0.0f, 0.0f, 0.75f, 0.0f, -0.25f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f,
    1.0f, 0.0f, -1.25f, 0.0f, 0.0f, 2.0f, 0.0f, 0.0f};
// avg_k4s3p1_ceil_incl_y (1, 2, 3, 3)
const std::vector<float> avg_k4s3p1_ceil_incl_y = {
    -1.0078125f, -0.328125f, 0.322916657f, 0.40625f, -0.65625f, -0.395833343f, 0.489583343f, 0.875f, -0.75f, 0.140625f,
    -0.328125f, -0.697916687f, -0.359375f, 0.875f, 0.625f, -0.53125f, -0.145833328f, 0.611111104f};
// avg_k4s3p1_ceil_incl_dx (1, 2, 7, 7)
const std::vector<float> avg_k4s3p1_ceil_incl_dx = {
    -0.125f, -0.125f, -0.046875f, 0.078125f, 0.078125f, 0.0989583358f, 0.020833334f, -0.125f, -0.125f, -0.046875f,
    0.078125f, 0.078125f, 0.0989583358f, 0.020833334f, -0.171875f, -0.171875f, -0.203125f, -0.03125f, -0.03125f, 0.114583336f,
    0.145833328f, -0.046875f, -0.046875f, -0.15625f, -0.109375f, -0.109375f, 0.015625f, 0.125f, -0.046875f, -0.046875f,
    -0.15625f, -0.109375f, -0.109375f, 0.015625f, 0.125f, -0.00520833209f, -0.00520833209f, -0.15625f, -0.151041672f, -0.151041672f,
    -0.192708343f, -0.0416666716f, 0.0416666679f, 0.0416666679f, 0.0f, -0.0416666679f, -0.0416666679f, -0.208333343f, -0.166666672f, 0.109375f,
    0.109375f, 0.15625f, 0.046875f, 0.046875f, 0.026041666f, -0.020833334f, 0.109375f, 0.109375f, 0.15625f, 0.046875f,
    0.046875f, 0.026041666f, -0.020833334f, 0.03125f, 0.03125f, 0.203125f, 0.171875f, 0.171875f, 0.234375f, 0.0625f,
    -0.078125f, -0.078125f, 0.046875f, 0.125f, 0.125f, 0.208333343f, 0.0833333358f, -0.078125f, -0.078125f, 0.046875f,
    0.125f, 0.125f, 0.208333343f, 0.0833333358f, -0.078125f, -0.078125f, -0.0364583358f, 0.0416666642f, 0.0416666642f, -0.0972222239f,
    -0.138888896f, 0.0f, 0.0f, -0.0833333358f, -0.0833333358f, -0.0833333358f, -0.305555552f, -0.222222224f};
// avg_k4s3p1_ceil_excl_y (1, 2, 3, 3)
const std::vector<float> avg_k4s3p1_ceil_excl_y = {
    -1.79166663f, -0.4375f, 0.645833313f, 0.541666687f, -0.65625f, -0.59375f, 0.979166687f, 1.3125f, -1.6875f, 0.25f,
    -0.4375f, -1.39583337f, -0.479166657f, 0.875f, 0.9375f, -1.0625f, -0.21875f, 1.375f};
// avg_k4s3p1_ceil_excl_dx (1, 2, 7, 7)
const std::vector<float> avg_k4s3p1_ceil_excl_dx = {
    -0.222222224f, -0.222222224f, -0.11805556f, 0.104166664f, 0.104166664f, 0.145833328f, 0.0416666679f, -0.222222224f, -0.222222224f, -0.11805556f,
    0.104166664f, 0.104166664f, 0.145833328f, 0.0416666679f, -0.284722209f, -0.284722209f, -0.289930552f, -0.00520833582f, -0.00520833582f, 0.223958328f,
    0.229166672f, -0.0625f, -0.0625f, -0.171875f, -0.109375f, -0.109375f, 0.078125f, 0.1875f, -0.0625f, -0.0625f,
    -0.171875f, -0.109375f, -0.109375f, 0.078125f, 0.1875f, 0.0208333358f, 0.0208333358f, -0.151041657f, -0.171875f, -0.171875f,
    -0.359375f, -0.1875f, 0.0833333358f, 0.0833333358f, 0.0208333358f, -0.0625f, -0.0625f, -0.4375f, -0.375f, 0.194444448f,
    0.194444448f, 0.256944448f, 0.0625f, 0.0625f, 0.0208333321f, -0.0416666679f, 0.194444448f, 0.194444448f, 0.256944448f, 0.0625f,
    0.0625f, 0.0208333321f, -0.0416666679f, 0.0902777836f, 0.0902777836f, 0.277777791f, 0.1875f, 0.1875f, 0.270833313f, 0.0833333284f,
    -0.104166664f, -0.104166664f, 0.0208333358f, 0.125f, 0.125f, 0.25f, 0.125f, -0.104166664f, -0.104166664f, 0.0208333358f,
    0.125f, 0.125f, 0.25f, 0.125f, -0.104166664f, -0.104166664f, -0.104166664f, 0.0f, 0.0f, -0.375f,
    -0.375f, 0.0f, 0.0f, -0.125f, -0.125f, -0.125f, -0.625f, -0.5f};
// lp2_k3s3_ceil_y (1, 2, 3, 3)
const std::vector<float> lp2_k3s3_ceil_y = {
    8.38455582f, 10.4328213f, 11.7861814f, 12.5629663f, 9.30662537f, 10.6027336f, 11.6199589f, 13.8838654f, 2.4375f, 10.9836531f,
    9.72050858f, 9.37062359f, 9.83715057f, 11.9934874f, 13.4015503f, 8.90641403f, 11.0513716f, 11.625f};
// lp2_k3s3_ceil_dx (1, 2, 7, 7)
const std::vector<float> lp2_k3s3_ceil_dx = {
    -0.0149083631f, -0.56651777f, -1.11812723f, 0.104837418f, 0.381907731f, 0.658978045f, 0.107382096f, -0.954135239f, -0.0447250903f, -0.596334517f,
    0.576605797f, 0.119814187f, 0.396884501f, 0.357940346f, -0.432342529f, -0.983951986f, -0.0745418146f, 0.314512253f, 0.591582537f, 0.134790957f,
    0.218741313f, -0.343270838f, -0.115667351f, -0.253721923f, -0.0822666585f, -0.517104745f, -0.951942801f, 0.530523539f, -0.212678686f, -0.35073325f,
    -0.123129763f, -0.822666585f, -0.105771422f, -0.540609479f, 2.20167279f, -0.082086511f, -0.220141083f, -0.358195662f, -0.411333293f, -0.846171379f,
    -0.129276186f, 1.27325654f, 0.68578124f, 0.193632364f, 0.492148906f, -0.661739349f, -0.249840379f, -0.499680758f, -4.5f, 0.497899026f,
    0.866344273f, 0.258907497f, 0.303803533f, 0.00964455679f, 0.188068852f, -0.380177468f, 0.149369702f, 0.517814994f, 0.886260271f, 0.135023803f,
    0.313448101f, 0.0192891136f, -0.205095738f, 0.776722491f, 0.16928567f, 0.537730932f, 0.438827336f, 0.144668356f, 0.323092639f, -0.030014012f,
    -0.341498822f, -0.635346651f, -0.150894821f, 0.583650112f, 0.969276011f, 0.333514333f, 0.965373397f, -0.0635346621f, -0.357382476f, -0.651230276f,
    0.218868777f, 0.60449475f, 0.990120649f, 0.475691259f, -0.563870132f, -0.0794183314f, -0.373266131f, 0.875475109f, 0.23971343f, 0.625339389f,
    1.3571192f, 0.0f, 0.0f, 0.0f, -0.831344783f, -1.45909488f, -0.424155504f, -6.0f};
// lp3_k3s3_ceil_y (1, 2, 3, 3)
const std::vector<float> lp3_k3s3_ceil_y = {
    6.4808073f, 7.87363005f, 8.75124836f, 9.28184509f, 7.11527729f, 7.96678305f, 8.55520916f, 10.0768881f, 1.69006813f, 8.23441792f,
    7.44072104f, 7.19295311f, 7.46526957f, 8.9080143f, 9.78840828f, 6.84248304f, 8.25958061f, 8.06032467f};
// lp3_k3s3_ceil_dx (1, 2, 7, 7)
const std::vector<float> lp3_k3s3_ceil_dx = {
    -0.000186008096f, -0.268595695f, -1.04629552f, 0.0154374698f, 0.204861522f, 0.609937549f, 0.0278874524f, -0.76188916f, -0.00167407282f, -0.297612965f,
    0.466983467f, 0.020163225f, 0.221244141f, 0.309860587f, -0.156432807f, -0.810251236f, -0.00465020258f, 0.13893722f, 0.491557389f, 0.0255190823f,
    0.115719534f, -0.287824929f, -0.0326795541f, -0.15724273f, -0.00661622873f, -0.261408538f, -0.885899484f, 0.110781334f, -0.110484779f, -0.300475061f,
    -0.037032295f, -0.661622822f, -0.0109370304f, -0.285713047f, 1.90793157f, -0.0164587982f, -0.118374117f, -0.313397259f, -0.165405706f, -0.699969947f,
    -0.0163380336f, 0.638100505f, 0.578399479f, 0.0461118482f, 0.297885746f, -0.554179728f, -0.0789954215f, -0.315981686f, -3.12012553f, 0.252041638f,
    0.763081312f, 0.0681520626f, 0.210025668f, 0.000211666076f, 0.0804860294f, -0.327064991f, 0.022683749f, 0.27260825f, 0.798568726f, 0.0414865538f,
    0.223572299f, 0.000846664305f, -0.0951863304f, 0.613368571f, 0.0291360151f, 0.293981373f, 0.438201696f, 0.0476248674f, 0.237542257f, -0.00203849375f,
    -0.162000358f, -0.560736775f, -0.0316290595f, 0.308748096f, 0.851518631f, 0.100815713f, 0.582311451f, -0.00560736796f, -0.177420616f, -0.589124084f,
    0.0434177034f, 0.331195354f, 0.88853687f, 0.141388789f, -0.441667825f, -0.00876151212f, -0.19354181f, 0.694683254f, 0.0520815514f, 0.354430228f,
    1.15080202f, 0.0f, 0.0f, 0.0f, -0.412436873f, -1.27046359f, -0.107360698f, -4.16016769f};
// lp2_k3s2p1_y (1, 2, 4, 4)
const std::vector<float> lp2_k3s2p1_y = {
    4.6561451f, 7.60422373f, 8.73547935f, 8.70120335f, 8.55291462f, 8.68660069f, 10.0524015f, 9.10421467f, 9.97555637f, 11.5888214f,
    9.30662537f, 8.47583866f, 6.77944946f, 10.4251423f, 9.47426605f, 5.61457348f, 7.12554836f, 9.60610962f, 6.41013622f, 5.92729378f,
    8.28001213f, 11.3178511f, 11.0933542f, 6.84852839f, 7.77591419f, 10.542325f, 11.9934874f, 10.6387777f, 6.77944946f, 8.20608616f,
    9.18707466f, 8.26277447f};
// lp2_k3s2p1_dx (1, 2, 7, 7)
const std::vector<float> lp2_k3s2p1_dx = {
    -0.0268462431f, -0.629749238f, 0.770542145f, 0.168876082f, 0.0912228152f, -0.316668302f, -0.145454019f, -2.53659391f, -0.055703707f, 0.842655182f,
    1.99921048f, 0.0783582777f, -0.207880288f, -0.793769598f, -0.370853096f, -0.131706521f, 0.0539624244f, 0.583850145f, 0.245588079f, -0.00582779478f,
    -0.188786194f, -2.0411129f, -0.0606220849f, 1.37567127f, 0.198631316f, 0.35839954f, 0.232428923f, -0.105519034f, -0.535684407f, 0.00376020372f,
    0.311453164f, 1.01322961f, 0.0453306101f, 0.146889925f, -0.153008461f, -0.460278898f, 0.02988052f, 2.05710888f, 1.15716195f, 0.837615728f,
    0.107690834f, -0.0884868205f, -0.979522705f, 0.0111947358f, 0.731404841f, 1.82153189f, 0.244082242f, 0.488164485f, 0.0f, -0.438562721f,
    -1.89519119f, -0.338326335f, -0.0519638509f, 0.0243754573f, 0.578129709f, 0.200344369f, -0.216487184f, -1.92966616f, -2.01820755f, -0.0570571199f,
    1.34151769f, 0.111351475f, 0.295164526f, -0.441575438f, -0.26052773f, -0.521852553f, -0.110376745f, 0.253530174f, 0.871940017f, 0.0273781456f,
    -0.416241884f, -2.25893641f, -0.352576584f, -0.0552229136f, 1.63406003f, 0.849267662f, 0.618866265f, -0.0321505591f, -0.581019521f, -0.729203463f,
    0.00476296339f, 0.528932929f, 1.28493059f, 0.14980574f, -0.448974133f, -0.247366756f, -0.865415573f, 0.362250656f, 0.522688925f, 2.08174229f,
    1.1610992f, -0.0829713345f, -0.86323458f, -0.114244469f, 0.200199306f, 1.17012227f, 0.529252946f, 0.468970776f};
// gap_y (1, 2, 1, 1)
const std::vector<float> gap_y = {
    3.0625f, 3.125f};
// gap_dx (1, 2, 7, 7)
const std::vector<float> gap_dx = {
    -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f,
    -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f,
    -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f,
    -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f,
    -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, -0.0408163257f, 0.025510205f,
    0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f,
    0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f,
    0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f,
    0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f,
    0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f, 0.025510205f};
}  // namespace golden

Tensor input_a() {
  Tensor t(Shape{1, 2, 7, 7});
  for (int64_t i = 0; i < 98; ++i) t[i] = static_cast<float>((i * 37) % 98 - 49) * 0.125f;
  return t;
}

Tensor input_b() {
  Tensor t(Shape{1, 2, 7, 7});
  for (int64_t i = 0; i < 98; ++i) t[i] = static_cast<float>((i * 37) % 98 + 1) * 0.0625f;
  return t;
}

Tensor dy_pattern(const Shape& shape) {
  Tensor t(shape);
  for (int64_t j = 0; j < t.numel(); ++j) t[j] = static_cast<float>((j * 13) % 17 - 8) * 0.25f;
  return t;
}

// Distinct values spaced `step` apart in a scrambled order: max pooling has no ties, and a central
// difference of eps < step / 2 never crosses a kink (Caffe's checker keeps max-pool inputs apart the same way).
Tensor distinct_tensor(const Shape& shape, int64_t multiplier, float step = 0.1f) {
  Tensor t(shape);
  const int64_t n = t.numel();
  int64_t m = multiplier;
  while (std::gcd(m, n) != 1) ++m;
  for (int64_t i = 0; i < n; ++i) t[i] = static_cast<float>((i * m) % n - n / 2) * step;
  return t;
}

Pool2dOptions pool(int64_t k, int64_t s, int64_t pad = 0, bool ceil = false) {
  Pool2dOptions o;
  o.kernel_h = o.kernel_w = k;
  o.stride_h = o.stride_w = s;
  o.pad_h = o.pad_w = pad;
  o.ceil_mode = ceil;
  return o;
}

Pool2dOptions avg_pool(int64_t k, int64_t s, int64_t pad, bool ceil, bool count_include_pad) {
  Pool2dOptions o = pool(k, s, pad, ceil);
  o.count_include_pad = count_include_pad;
  return o;
}

Pool2dOptions lp_pool(double p, int64_t k, int64_t s, int64_t pad = 0, bool ceil = false) {
  Pool2dOptions o = pool(k, s, pad, ceil);
  o.p = p;
  return o;
}

void check_values(const Tensor& t, const Shape& shape, const std::vector<float>& expected, double eps = 2e-6) {
  REQUIRE(t.shape() == shape);
  REQUIRE(static_cast<int64_t>(expected.size()) == t.numel());
  for (int64_t i = 0; i < t.numel(); ++i) {
    INFO("element " << i);
    if (eps == 0)  // exact: max pooling only copies and adds values
      CHECK(t[i] == expected[static_cast<size_t>(i)]);
    else
      CHECK(t[i] == doctest::Approx(expected[static_cast<size_t>(i)]).epsilon(eps));
  }
}

struct Pass {
  Tensor y, dx;
};

// Forward into a garbage-filled y, backward of dy into a garbage-filled dx: both must be overwritten.
Pass run(Layer& layer, const Tensor& x, const Tensor* dy = nullptr) {
  Pass r;
  r.y = Tensor(layer.output_shape(x.shape()), 123.0f);
  layer.forward(x, r.y, RunContext{});
  const Tensor g = dy ? *dy : dy_pattern(r.y.shape());
  r.dx = Tensor(x.shape(), -777.0f);
  layer.backward(x, r.y, g, &r.dx, RunContext{});
  return r;
}

// Runs f, which must throw E whose message contains every one of `parts`.
template <class E, class F>
void check_throws(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    FAIL_CHECK("no exception; expected one mentioning " << parts.front());
  } catch (const E& e) {
    const std::string what = e.what();
    for (const auto& part : parts) {
      INFO("message: " << what);
      CHECK(what.find(part) != std::string::npos);
    }
  }
}

void grad_check(Layer& layer, const Tensor& x) {
  INFO("layer " << layer.name() << " input " << x.shape().str());
  LayerParams params(layer, x.shape());
  CHECK(params.specs.empty());
  check_gradients(layer, params, x, RunContext{});
}

}  // namespace

TEST_CASE("pool output size follows PyTorch's floor/ceil rule and the last-window-in-input rule") {
  // cifar10_quick (Caffe prototxt, ceil mode): 32 -> 16 -> 8 -> 4 with kernel 3 stride 2; floor gives 15.
  CHECK(pool_output_size(32, 3, 2, 0, true) == 16);
  CHECK(pool_output_size(16, 3, 2, 0, true) == 8);
  CHECK(pool_output_size(8, 3, 2, 0, true) == 4);
  CHECK(pool_output_size(32, 3, 2, 0, false) == 15);
  // (H + 2*pad - kernel + stride - 1) / stride + 1 would be 5 and 4; the last window would start at
  // (out-1)*stride - pad = H, entirely in the right padding, so it is dropped (torch: 3 and 4).
  CHECK(pool_output_size(5, 2, 2, 1, true) == 3);
  CHECK(pool_output_size(7, 2, 2, 1, true) == 4);
  CHECK(pool_output_size(7, 3, 3, 0, true) == 3);
  CHECK(pool_output_size(7, 3, 3, 0, false) == 2);
  CHECK(pool_output_size(7, 4, 3, 1, true) == 3);
  CHECK(pool_output_size(7, 4, 3, 1, false) == 2);

  MaxPool2d pool1("pool1", pool(3, 2, 0, true));
  AvgPool2d pool2("pool2", avg_pool(3, 2, 0, true, true));
  LpPool2d pool3("pool3", lp_pool(2.0, 3, 2, 0, true));
  Shape s{2, 32, 32, 32};
  s = pool1.output_shape(s);
  CHECK(s == Shape{2, 32, 16, 16});
  s = pool2.output_shape(s);
  CHECK(s == Shape{2, 32, 8, 8});
  s = pool3.output_shape(s);
  CHECK(s == Shape{2, 32, 4, 4});
  CHECK(MaxPool2d("p", pool(3, 2)).output_shape(Shape{2, 32, 32, 32}) == Shape{2, 32, 15, 15});
  // Non-square: kernel 3x2, stride 2x1, pad 1x0 on 7x5 -> (7+2-3)/2+1 = 4, (5-2)/1+1 = 4.
  Pool2dOptions o = pool(3, 2, 1);
  o.kernel_w = 2;
  o.stride_w = 1;
  o.pad_w = 0;
  CHECK(AvgPool2d("p", o).output_shape(Shape{1, 3, 7, 5}) == Shape{1, 3, 4, 4});
  // Stride defaults to the kernel, as in PyTorch.
  Pool2dOptions d;
  d.kernel_h = d.kernel_w = 2;
  CHECK(MaxPool2d("p", d).options().stride_h == 2);
  CHECK(MaxPool2d("p", d).output_shape(Shape{1, 1, 6, 6}) == Shape{1, 1, 3, 3});
  // One FLOP per window element: N*C*P*Q*R*S.
  CHECK(pool1.forward_flops(Shape{2, 32, 32, 32}) == 2.0 * 32 * 16 * 16 * 9);
  CHECK(GlobalAvgPool2d("gap").forward_flops(Shape{2, 64, 8, 8}) == 2.0 * 64 * 64);
  CHECK(GlobalAvgPool2d("gap").output_shape(Shape{2, 64, 8, 8}) == Shape{2, 64, 1, 1});
}

TEST_CASE("max pooling by hand: ties go to the first maximum in scan order, overlaps accumulate") {
  // PyTorch's CPU kernel keeps the first index for which (val > max), so ties pick the earliest element.
  MaxPool2d pool1("pool1", pool(2, 2));
  const Tensor x = tensor_from(Shape{1, 1, 4, 4}, {1, 3, 3, 0,  //
                                                   2, 3, 1, 1,  //
                                                   5, 5, 5, 5,  //
                                                   5, 5, 4, 5});
  const Tensor dy = tensor_from(Shape{1, 1, 2, 2}, {1, 2, 3, 4});
  Pass r = run(pool1, x, &dy);
  check_values(r.y, Shape{1, 1, 2, 2}, {3, 3, 5, 5}, 0);
  check_values(r.dx, Shape{1, 1, 4, 4},
               {0, 1, 2, 0,  // (0,1) wins over (1,1); (0,2) is the only 3
                0, 0, 0, 0,  //
                3, 0, 4, 0,  // all-5 window: (2,0); (2,2) wins over (3,3)
                0, 0, 0, 0},
               0);

  // Overlapping windows (kernel 2, stride 1) all choosing the centre add their gradients there.
  MaxPool2d pool2("pool2", pool(2, 1));
  const Tensor x2 = tensor_from(Shape{1, 1, 3, 3}, {1, 2, 1, 2, 9, 2, 1, 2, 1});
  Pass r2 = run(pool2, x2, &dy);
  check_values(r2.y, Shape{1, 1, 2, 2}, {9, 9, 9, 9}, 0);
  check_values(r2.dx, Shape{1, 1, 3, 3}, {0, 0, 0, 0, 10, 0, 0, 0, 0}, 0);

  // Padding is -inf, never 0: an all-negative input keeps its own values.
  MaxPool2d pool3("pool3", pool(2, 2, 1));
  const Tensor x3 = tensor_from(Shape{1, 1, 2, 2}, {-1, -2, -3, -4});
  Pass r3 = run(pool3, x3, &dy);
  check_values(r3.y, Shape{1, 1, 2, 2}, {-1, -2, -3, -4}, 0);
  check_values(r3.dx, Shape{1, 1, 2, 2}, {1, 2, 3, 4}, 0);
}

TEST_CASE("max pooling treats -inf and NaN as torch.nn.functional.max_pool2d does") {
  // torch (kernel 2, stride 2, dy = [1, 2, 3]): y = [-inf, -inf, nan], x.grad = [[1, 0, 2, 0, 0, 0],
  // [0, 0, 0, 0, 3, 0]]: an all -inf window keeps its first element, a NaN wins and the last NaN is kept.
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  MaxPool2d pool1("pool1", pool(2, 2));
  const Tensor x = tensor_from(Shape{1, 1, 2, 6}, {-inf, -inf, -inf, -inf, 1, nan, -inf, -inf, -inf, -inf, nan, 2});
  const Tensor dy = tensor_from(Shape{1, 1, 1, 3}, {1, 2, 3});
  Pass r = run(pool1, x, &dy);
  CHECK(r.y[0] == -inf);
  CHECK(r.y[1] == -inf);
  CHECK(std::isnan(r.y[2]));
  check_values(r.dx, Shape{1, 1, 2, 6}, {1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0}, 0);
}

TEST_CASE("avg pooling by hand: padding with and without count_include_pad") {
  const Tensor x = tensor_from(Shape{1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  const Tensor ones(Shape{1, 1, 2, 2}, 1.0f);
  // Kernel 3, stride 2, pad 1: each window holds a 2x2 block of real inputs and 5 zeros of padding.
  AvgPool2d incl("pool_incl", avg_pool(3, 2, 1, false, true));
  Pass a = run(incl, x, &ones);
  check_values(a.y, Shape{1, 1, 2, 2}, {12.0f / 9, 16.0f / 9, 24.0f / 9, 28.0f / 9});
  // The centre is in all four windows, edges in two, corners in one.
  check_values(a.dx, Shape{1, 1, 3, 3},
               {1.0f / 9, 2.0f / 9, 1.0f / 9, 2.0f / 9, 4.0f / 9, 2.0f / 9, 1.0f / 9, 2.0f / 9, 1.0f / 9});
  AvgPool2d excl("pool_excl", avg_pool(3, 2, 1, false, false));
  Pass b = run(excl, x, &ones);
  check_values(b.y, Shape{1, 1, 2, 2}, {3, 4, 6, 7});
  check_values(b.dx, Shape{1, 1, 3, 3}, {0.25f, 0.5f, 0.25f, 0.5f, 1, 0.5f, 0.25f, 0.5f, 0.25f});
}

TEST_CASE("lp pooling by hand: p = 2 and p = 3, and zero gradient where the norm is 0") {
  // Windows {1, 2, 2, 4}, {3, 0, 0, 4} and {0, 0, 0, 0}.
  const Tensor x = tensor_from(Shape{1, 1, 2, 6}, {1, 2, 3, 0, 0, 0, 2, 4, 0, 4, 0, 0});
  const Tensor ones(Shape{1, 1, 1, 3}, 1.0f);
  LpPool2d l2("lp2", lp_pool(2.0, 2, 2));
  Pass a = run(l2, x, &ones);
  check_values(a.y, Shape{1, 1, 1, 3}, {5, 5, 0});  // sqrt(1+4+4+16), sqrt(9+16)
  // dy/dx_i = x_i / y; torch.nn.LPPool2d also gives 0 for the all-zero window.
  check_values(a.dx, Shape{1, 1, 2, 6}, {0.2f, 0.4f, 0.6f, 0, 0, 0, 0.4f, 0.8f, 0, 0.8f, 0, 0});
  LpPool2d l3("lp3", lp_pool(3.0, 2, 2));
  Pass b = run(l3, x, &ones);
  const float y1 = std::cbrt(81.0f), y2 = std::cbrt(91.0f);  // 1+8+8+64, 27+64
  check_values(b.y, Shape{1, 1, 1, 3}, {y1, y2, 0});
  // dy/dx_i = x_i^2 / y^2.
  const float s1 = 1 / (y1 * y1), s2 = 1 / (y2 * y2);
  check_values(b.dx, Shape{1, 1, 2, 6}, {s1, 4 * s1, 9 * s2, 0, 0, 0, 4 * s1, 16 * s1, 0, 16 * s2, 0, 0});
  // p = 1 is a plain window sum (torch: avg_pool2d * kernel area).
  LpPool2d l1("lp1", lp_pool(1.0, 2, 2));
  Pass c = run(l1, x, &ones);
  check_values(c.y, Shape{1, 1, 1, 3}, {9, 7, 0});
  check_values(c.dx, Shape{1, 1, 2, 6}, {1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0});
}

TEST_CASE("global average pooling by hand") {
  GlobalAvgPool2d gap("gap");
  const Tensor x = tensor_from(Shape{1, 2, 2, 2}, {1, 2, 3, 4, -1, 0, 5, 8});
  const Tensor dy = tensor_from(Shape{1, 2, 1, 1}, {4, -8});
  Pass r = run(gap, x, &dy);
  check_values(r.y, Shape{1, 2, 1, 1}, {2.5f, 3});
  check_values(r.dx, Shape{1, 2, 2, 2}, {1, 1, 1, 1, -2, -2, -2, -2});
}

TEST_CASE("max pooling matches torch.nn.functional.max_pool2d in ceil mode") {
  MaxPool2d k3("pool_k3", pool(3, 3, 0, true));  // 7 -> 3 (floor: 2); edge windows are 3x1, 1x3, 1x1
  Pass a = run(k3, input_a());
  check_values(a.y, Shape{1, 2, 3, 3}, golden::max_k3s3_ceil_y, 0);
  check_values(a.dx, Shape{1, 2, 7, 7}, golden::max_k3s3_ceil_dx, 0);
  MaxPool2d k2("pool_k2", pool(2, 2, 1, true));  // 7 -> 4: the fifth window would start in the padding
  Pass b = run(k2, input_a());
  check_values(b.y, Shape{1, 2, 4, 4}, golden::max_k2s2p1_ceil_y, 0);
  check_values(b.dx, Shape{1, 2, 7, 7}, golden::max_k2s2p1_ceil_dx, 0);
}

TEST_CASE("avg pooling matches torch.nn.functional.avg_pool2d with pad and ceil mode, both count modes") {
  // Kernel 4, stride 3, pad 1 on 7: the last window [5, 9) is clipped to the padded extent [-1, 8), so with
  // count_include_pad it divides by 3 (not 4) per dimension, without it by 2.
  AvgPool2d incl("pool_incl", avg_pool(4, 3, 1, true, true));
  Pass a = run(incl, input_a());
  check_values(a.y, Shape{1, 2, 3, 3}, golden::avg_k4s3p1_ceil_incl_y);
  check_values(a.dx, Shape{1, 2, 7, 7}, golden::avg_k4s3p1_ceil_incl_dx);
  AvgPool2d excl("pool_excl", avg_pool(4, 3, 1, true, false));
  Pass b = run(excl, input_a());
  check_values(b.y, Shape{1, 2, 3, 3}, golden::avg_k4s3p1_ceil_excl_y);
  check_values(b.dx, Shape{1, 2, 7, 7}, golden::avg_k4s3p1_ceil_excl_dx);
}

TEST_CASE("lp pooling matches torch.nn.functional.lp_pool2d in ceil mode, and its formula with padding") {
  // torch scales a clipped ceil-mode window by kernel area / window size (avg_pool2d * area); we follow.
  LpPool2d p2("lp_p2", lp_pool(2.0, 3, 3, 0, true));
  Pass a = run(p2, input_b());
  check_values(a.y, Shape{1, 2, 3, 3}, golden::lp2_k3s3_ceil_y);
  check_values(a.dx, Shape{1, 2, 7, 7}, golden::lp2_k3s3_ceil_dx, 1e-5);
  LpPool2d p3("lp_p3", lp_pool(3.0, 3, 3, 0, true));
  Pass b = run(p3, input_b());
  check_values(b.y, Shape{1, 2, 3, 3}, golden::lp3_k3s3_ceil_y, 1e-5);
  check_values(b.dx, Shape{1, 2, 7, 7}, golden::lp3_k3s3_ceil_dx, 1e-5);
  LpPool2d pad("lp_pad", lp_pool(2.0, 3, 2, 1));
  Pass c = run(pad, input_b());
  check_values(c.y, Shape{1, 2, 4, 4}, golden::lp2_k3s2p1_y);
  check_values(c.dx, Shape{1, 2, 7, 7}, golden::lp2_k3s2p1_dx, 1e-5);
  // Odd p with a negative power sum: torch's (negative)^(1/p) is NaN, and so is ours.
  const Tensor neg = tensor_from(Shape{1, 1, 2, 2}, {-1, -2, 0.5f, 0.1f});
  Tensor y;
  p3.forward(neg, y, RunContext{});
  CHECK(std::isnan(y[0]));
}

TEST_CASE("global average pooling matches torch.nn.functional.adaptive_avg_pool2d(x, 1)") {
  GlobalAvgPool2d gap("gap");
  Pass r = run(gap, input_b());
  check_values(r.y, Shape{1, 2, 1, 1}, golden::gap_y);
  check_values(r.dx, Shape{1, 2, 7, 7}, golden::gap_dx);
}

TEST_CASE("max pooling gradients match central differences") {
  const Tensor x = distinct_tensor(Shape{2, 2, 7, 7}, 37);
  MaxPool2d a("max_k3s3_ceil", pool(3, 3, 0, true));
  grad_check(a, x);
  MaxPool2d b("max_k2s2p1_ceil", pool(2, 2, 1, true));
  grad_check(b, x);
  MaxPool2d c("max_k3s2p1_overlap", pool(3, 2, 1));
  grad_check(c, x);
  Pool2dOptions o = pool(3, 1, 1);
  o.kernel_w = 2;
  o.stride_w = 2;
  o.pad_w = 0;
  MaxPool2d d("max_k3x2_s1x2", o);
  grad_check(d, distinct_tensor(Shape{1, 3, 6, 5}, 11));
}

TEST_CASE("avg pooling gradients match central differences") {
  const Tensor x = random_tensor(Shape{2, 2, 7, 7}, 5);
  for (bool incl : {true, false}) {
    INFO("count_include_pad " << incl);
    AvgPool2d a("avg_k4s3p1_ceil", avg_pool(4, 3, 1, true, incl));
    grad_check(a, x);
    AvgPool2d b("avg_k3s2p1_overlap", avg_pool(3, 2, 1, false, incl));
    grad_check(b, x);
    AvgPool2d c("avg_k2s2p1_ceil", avg_pool(2, 2, 1, true, incl));
    grad_check(c, x);
    Pool2dOptions o = avg_pool(3, 1, 1, false, incl);
    o.kernel_w = 2;
    o.stride_w = 2;
    o.pad_w = 1;
    AvgPool2d d("avg_k3x2_s1x2", o);
    grad_check(d, random_tensor(Shape{1, 3, 6, 5}, 6));
  }
}

TEST_CASE("lp pooling gradients match central differences") {
  const Tensor x = random_tensor(Shape{2, 2, 7, 7}, 8, 0.2f, 2.0f);  // positive: x^(p-1) is defined
  for (double p : {2.0, 3.0, 1.5}) {
    INFO("p " << p);
    LpPool2d a("lp_k3s3_ceil", lp_pool(p, 3, 3, 0, true));
    grad_check(a, x);
    LpPool2d b("lp_k3s2p1_overlap", lp_pool(p, 3, 2, 1));
    grad_check(b, x);
    LpPool2d c("lp_k2s1", lp_pool(p, 2, 1));
    grad_check(c, x);
  }
}

TEST_CASE("global average pooling gradients match central differences") {
  GlobalAvgPool2d gap("gap");
  grad_check(gap, random_tensor(Shape{2, 3, 4, 5}, 9));
}

TEST_CASE("2x2 stride-2 max pooling: first maximum, NaN and -inf as the definition says, on every kernel path") {
  // The kernels run this window (lenet5's) on a path of its own; check it against the definition, scalar:
  // start at -inf with the window's first index, take an element when it is greater or NaN, in row-major
  // order. Values from a small set (ties everywhere), some NaN and -inf; W = 42 and 43 give full vector chunks
  // and tails on every path, H = 11 in ceil mode a last window of one row (the general path).
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  struct Shape4 {
    int64_t H, W;
    bool ceil;
  };
  for (const Shape4 sh : {Shape4{10, 42, false}, Shape4{10, 43, false}, Shape4{11, 42, true}}) {
    CAPTURE(sh.W);
    CAPTURE(sh.ceil);
    Tensor x(Shape{2, 3, sh.H, sh.W});
    for (int64_t i = 0; i < x.numel(); ++i) {
      const int64_t k = (i * 7919) % 23;
      x[i] = k == 0 ? nan : k == 1 ? -inf : static_cast<float>(k % 5) - 2.0f;
    }
    MaxPool2d pool1("pool1", pool(2, 2, 0, sh.ceil));
    const Shape out = pool1.output_shape(x.shape());
    const int64_t P = out[2], Q = out[3];
    std::vector<float> want_y(static_cast<size_t>(out.numel()));
    std::vector<float> want_dx(static_cast<size_t>(x.numel()), 0.0f);
    const Tensor dy = dy_pattern(out);
    for (int64_t plane = 0; plane < 6; ++plane)
      for (int64_t p = 0; p < P; ++p)
        for (int64_t q = 0; q < Q; ++q) {
          float best = -inf;
          int64_t at = (2 * p) * sh.W + 2 * q;
          for (int64_t h = 2 * p; h < std::min(2 * p + 2, sh.H); ++h)
            for (int64_t w = 2 * q; w < std::min(2 * q + 2, sh.W); ++w) {
              const float v = x[plane * sh.H * sh.W + h * sh.W + w];
              if (v > best || v != v) {
                best = v;
                at = h * sh.W + w;
              }
            }
          const int64_t o = (plane * P + p) * Q + q;
          want_y[static_cast<size_t>(o)] = best;
          want_dx[static_cast<size_t>(plane * sh.H * sh.W + at)] += dy[o];
        }
    IsaGuard guard;
    int paths = 0;
    for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512, Isa::avx512bf16}) {
      if (!isa_supported(isa)) continue;
      CAPTURE(static_cast<int>(isa));
      set_isa(isa);
      const Pass r = run(pool1, x, &dy);
      CHECK(std::memcmp(r.y.data(), want_y.data(), want_y.size() * sizeof(float)) == 0);
      CHECK(std::memcmp(r.dx.data(), want_dx.data(), want_dx.size() * sizeof(float)) == 0);
      ++paths;
    }
    CHECK(paths >= 2);  // the portable path and at least one vector path
  }
}

TEST_CASE("pooling is bit-identical at 1, 2 and 4 threads") {
  const Tensor x = distinct_tensor(Shape{4, 16, 17, 17}, 101, 0.01f);
  const Tensor xp = random_tensor(Shape{4, 16, 17, 17}, 10, 0.1f, 2.0f);
  MaxPool2d max_pool("max", pool(3, 2, 1, true));
  AvgPool2d avg_incl("avg_incl", avg_pool(3, 2, 1, true, true));
  AvgPool2d avg_excl("avg_excl", avg_pool(3, 2, 1, true, false));
  LpPool2d lp("lp", lp_pool(3.0, 3, 2, 0, true));
  GlobalAvgPool2d gap("gap");
  struct Case {
    Layer* layer;
    const Tensor* x;
  };
  for (Case c : {Case{&max_pool, &x}, Case{&avg_incl, &x}, Case{&avg_excl, &x}, Case{&lp, &xp}, Case{&gap, &x}}) {
    INFO("layer " << c.layer->name());
    std::vector<Pass> passes;
    for (int threads : {1, 2, 4}) {
      ThreadLimit limit(threads);
      passes.push_back(run(*c.layer, *c.x, nullptr));
    }
    for (size_t t = 1; t < passes.size(); ++t) {
      REQUIRE(passes[t].y.shape() == passes[0].y.shape());
      CHECK(std::memcmp(passes[t].y.data(), passes[0].y.data(), sizeof(float) * passes[0].y.numel()) == 0);
      CHECK(std::memcmp(passes[t].dx.data(), passes[0].dx.data(), sizeof(float) * passes[0].dx.numel()) == 0);
    }
  }
}

TEST_CASE("pooling layers read their options from the model spec") {
  auto max = MaxPool2d::from_config(
      LayerConfig::parse(R"({"name": "pool1", "type": "max_pool2d", "kernel": 3, "stride": 2, "ceil_mode": true})"));
  CHECK(max->type() == "max_pool2d");
  CHECK(max->name() == "pool1");
  CHECK(max->output_shape(Shape{1, 32, 32, 32}) == Shape{1, 32, 16, 16});
  const auto& mo = dynamic_cast<MaxPool2d&>(*max).options();
  CHECK(mo.kernel_h == 3);
  CHECK(mo.stride_w == 2);
  CHECK(mo.ceil_mode);

  auto avg = AvgPool2d::from_config(LayerConfig::parse(
      R"({"name": "pool2", "type": "avg_pool2d", "kernel": [3, 2], "pad": [1, 0], "count_include_pad": false})"));
  const auto& ao = dynamic_cast<AvgPool2d&>(*avg).options();
  CHECK(ao.kernel_h == 3);
  CHECK(ao.kernel_w == 2);
  CHECK(ao.stride_h == 3);  // default: the kernel
  CHECK(ao.stride_w == 2);
  CHECK(ao.pad_h == 1);
  CHECK(ao.pad_w == 0);
  CHECK_FALSE(ao.ceil_mode);
  CHECK_FALSE(ao.count_include_pad);
  auto avg_default = AvgPool2d::from_config(LayerConfig::parse(R"({"name": "a", "type": "avg_pool2d", "kernel": 2})"));
  CHECK(dynamic_cast<AvgPool2d&>(*avg_default).options().count_include_pad);

  auto lp = LpPool2d::from_config(LayerConfig::parse(R"({"name": "lp", "type": "lp_pool2d", "kernel": 2, "p": 3})"));
  CHECK(dynamic_cast<LpPool2d&>(*lp).options().p == 3.0);
  auto lp_default = LpPool2d::from_config(LayerConfig::parse(R"({"name": "lp", "type": "lp_pool2d", "kernel": 2})"));
  CHECK(dynamic_cast<LpPool2d&>(*lp_default).options().p == 2.0);
  CHECK(lp->type() == "lp_pool2d");

  auto gap = GlobalAvgPool2d::from_config(LayerConfig::parse(R"({"name": "gap", "type": "global_avg_pool2d"})"));
  CHECK(gap->type() == "global_avg_pool2d");

  // Unknown keys, including another kind's options, are errors that name the layer and the key.
  check_throws<ConfigError>(
      [] { MaxPool2d::from_config(LayerConfig::parse(R"({"name": "pool1", "type": "max_pool2d", "kernal": 3})")); },
      {"pool1", "kernel"});
  check_throws<ConfigError>(
      [] {
        MaxPool2d::from_config(
            LayerConfig::parse(R"({"name": "pool1", "type": "max_pool2d", "kernel": 3, "count_include_pad": true})"));
      },
      {"pool1", "count_include_pad"});
  check_throws<ConfigError>(
      [] { AvgPool2d::from_config(LayerConfig::parse(R"({"name": "pool2", "type": "avg_pool2d", "kernel": 3, "p": 2})")); },
      {"pool2", "'p'"});
  check_throws<ConfigError>(
      [] { GlobalAvgPool2d::from_config(LayerConfig::parse(R"({"name": "gap", "type": "global_avg_pool2d", "kernel": 2})")); },
      {"gap", "kernel"});
  check_throws<ConfigError>(
      [] { AvgPool2d::from_config(LayerConfig::parse(R"({"name": "pool2", "type": "avg_pool2d", "stride": 0, "kernel": 3})")); },
      {"pool2", "stride"});
  check_throws<ConfigError>(
      [] { AvgPool2d::from_config(LayerConfig::parse(R"({"name": "pool2", "type": "avg_pool2d", "kernel": [3, 3, 3]})")); },
      {"pool2", "kernel"});
}

TEST_CASE("pooling rejects bad options and shapes with messages naming the layer") {
  // pad > kernel / 2 (PyTorch: "pad should be at most half of kernel size").
  check_throws<ConfigError>([] { MaxPool2d("pool1", pool(3, 2, 2)); }, {"pool1", "pad", "half"});
  check_throws<ConfigError>(
      [] { AvgPool2d::from_config(LayerConfig::parse(R"({"name": "pool2", "type": "avg_pool2d", "kernel": 2, "pad": 2})")); },
      {"pool2", "pad"});
  check_throws<ConfigError>([] { AvgPool2d("pool2", pool(0, 1)); }, {"pool2", "kernel"});
  check_throws<ConfigError>([] { AvgPool2d("pool2", pool(2, -1)); }, {"pool2", "stride"});
  // p must be a finite number > 0.
  check_throws<ConfigError>([] { LpPool2d("lp1", lp_pool(0.0, 2, 2)); }, {"lp1", "p > 0"});
  check_throws<ConfigError>([] { LpPool2d("lp1", lp_pool(-2.0, 2, 2)); }, {"lp1", "p > 0"});
  check_throws<ConfigError>([] { LpPool2d("lp1", lp_pool(std::nan(""), 2, 2)); }, {"lp1", "p > 0"});
  check_throws<ConfigError>(
      [] { LpPool2d::from_config(LayerConfig::parse(R"({"name": "lp1", "type": "lp_pool2d", "kernel": 2, "p": -1})")); },
      {"lp1", "p > 0"});
  check_throws<ConfigError>(
      [] { LpPool2d::from_config(LayerConfig::parse(R"({"name": "lp1", "type": "lp_pool2d", "stride": 2})")); },
      {"lp1", "kernel"});

  // Rank != 4.
  MaxPool2d max_pool("pool1", pool(2, 2));
  AvgPool2d avg("pool2", pool(2, 2));
  LpPool2d lp("pool3", lp_pool(2.0, 2, 2));
  GlobalAvgPool2d gap("gap");
  for (Layer* layer : std::vector<Layer*>{&max_pool, &avg, &lp, &gap}) {
    check_throws<ShapeError>([&] { layer->output_shape(Shape{2, 3072}); }, {layer->name(), "rank 4", "(N=2, F=3072)"});
    Tensor flat(Shape{2, 12}), y;
    check_throws<ShapeError>([&] { layer->forward(flat, y, RunContext{}); }, {layer->name(), "rank 4"});
  }
  // A window larger than the padded input: 5x5 with pad 1 on 2x2 (floor mode).
  check_throws<ShapeError>([] { MaxPool2d("pool1", pool(5, 1, 1)).output_shape(Shape{1, 1, 2, 2}); },
                           {"pool1", "5x5", "(N=1, C=1, H=2, W=2)"});
  check_throws<ShapeError>([] { AvgPool2d("pool2", pool(3, 1)).output_shape(Shape{1, 1, 8, 2}); }, {"pool2", "3x3"});
  // PyTorch's ceil mode still gives one output there (its window starts inside the input); so do we.
  MaxPool2d ceil_pool("pool4", pool(3, 2, 0, true));
  CHECK(ceil_pool.output_shape(Shape{1, 1, 2, 2}) == Shape{1, 1, 1, 1});
  Pass r = run(ceil_pool, tensor_from(Shape{1, 1, 2, 2}, {1, 4, 3, 2}));
  CHECK(r.y[0] == 4.0f);

  // A gradient of the wrong shape, and a max-pool backward with no matching forward.
  Tensor x(Shape{1, 1, 4, 4}), y, dx;
  max_pool.forward(x, y, RunContext{});
  Tensor bad(Shape{1, 1, 3, 3});
  check_throws<ShapeError>([&] { max_pool.backward(x, y, bad, &dx, RunContext{}); }, {"pool1", "(N=1, C=1, H=3, W=3)"});
  check_throws<ShapeError>([&] { avg.backward(x, y, bad, &dx, RunContext{}); }, {"pool2", "(N=1, C=1, H=3, W=3)"});
  check_throws<ShapeError>([&] { lp.backward(x, y, bad, &dx, RunContext{}); }, {"pool3", "(N=1, C=1, H=3, W=3)"});
  Tensor x2(Shape{2, 1, 4, 4});
  Tensor dy2(Shape{2, 1, 2, 2});
  check_throws<ShapeError>([&] { max_pool.backward(x2, y, dy2, &dx, RunContext{}); }, {"pool1", "last forward"});
}
