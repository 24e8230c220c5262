// Measures what this CPU's vdpbf16ps computes, against candidate definitions of a bf16 dot-product step
// (docs/performance.md, "bf16"): 200,000 x 16 lanes per category of awkward inputs. Standalone, not part of the
// build (it needs a CPU with AVX512-BF16):
//   g++ -O2 -std=c++20 bench/bf16_hardware_probe.cpp -o /tmp/bf16_probe && /tmp/bf16_probe
// Categories: 0 ordinary, 1 cancellation and ties, 2 results near the denormal range, 3 denormal inputs,
// 4 overflow, 5 random bit patterns (NaN results compare equal to any NaN). A definition matches when its
// column of mismatches is 0 in every category. On AMD Zen 5 (2026-12-05) only "odd_first daz ftz" -- the Intel
// SDM's pseudo-code, framework/core/bf16.hpp's dpbf16_step -- matched, in all 19.2 million lanes.
#include <immintrin.h>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <cmath>
#include <random>
static float f(uint32_t u){float x;memcpy(&x,&u,4);return x;}
static uint32_t u(float x){uint32_t v;memcpy(&v,&x,4);return v;}
static float bf(uint16_t h){return f(uint32_t(h)<<16);}
static float daz(float x){ uint32_t v=u(x); if(((v>>23)&0xff)==0) return f(v&0x80000000u); return x;}
static float ftz(float x){ return daz(x);}  // after-rounding flush
__attribute__((target("avx512f,avx512bf16")))
static void hw(const float* acc, const uint32_t* a, const uint32_t* b, float* out){
  __m512 c=_mm512_loadu_ps(acc); __m512i A=_mm512_loadu_si512(a), B=_mm512_loadu_si512(b);
  c=_mm512_dpbf16_ps(c,(__m512bh)A,(__m512bh)B); _mm512_storeu_ps(out,c);
}
// variants
static float e_odd_first(float acc, uint32_t a, uint32_t b, bool dazin, bool ftzout){
  float a0=bf(a&0xffff),a1=bf(a>>16),b0=bf(b&0xffff),b1=bf(b>>16);
  if(dazin){a0=daz(a0);a1=daz(a1);b0=daz(b0);b1=daz(b1);acc=daz(acc);}
  float t=std::fma(a1,b1,acc); if(ftzout)t=ftz(t);
  t=std::fma(a0,b0,t); if(ftzout)t=ftz(t); return t;}
static float e_even_first(float acc, uint32_t a, uint32_t b, bool dazin, bool ftzout){
  float a0=bf(a&0xffff),a1=bf(a>>16),b0=bf(b&0xffff),b1=bf(b>>16);
  if(dazin){a0=daz(a0);a1=daz(a1);b0=daz(b0);b1=daz(b1);acc=daz(acc);}
  float t=std::fma(a0,b0,acc); if(ftzout)t=ftz(t);
  t=std::fma(a1,b1,t); if(ftzout)t=ftz(t); return t;}
static float e_single(float acc, uint32_t a, uint32_t b){ // one rounding of the exact 3-term sum (long double approx)
  float a0=daz(bf(a&0xffff)),a1=daz(bf(a>>16)),b0=daz(bf(b&0xffff)),b1=daz(bf(b>>16)); acc=daz(acc);
  long double s=(long double)a0*b0+(long double)a1*b1+(long double)acc; return ftz((float)s);}
static float e_prodsum(float acc, uint32_t a, uint32_t b){ // products summed first (rounded to fp32), then added to acc
  float a0=daz(bf(a&0xffff)),a1=daz(bf(a>>16)),b0=daz(bf(b&0xffff)),b1=daz(bf(b>>16)); acc=daz(acc);
  float p=ftz(std::fma(a0,b0,a1*b1)); return ftz(acc+p);}
int main(int argc,char**argv){
  std::mt19937 rng(1);
  const char* names[]={"odd_first daz ftz","even_first daz ftz","odd_first none","single rounding","prodsum"};
  for(int cat=0;cat<6;++cat){
    long mism[5]={0,0,0,0,0}; long total=0; long ex_printed=0;
    for(int it=0;it<200000;++it){
      float acc[16],out[16]; uint32_t A[16],B[16];
      for(int l=0;l<16;++l){
        auto rb=[&](int emin,int emax)->uint16_t{ int e=emin+int(rng()%(emax-emin+1)); uint16_t m=rng()&0x7f; uint16_t s=rng()&1; return uint16_t((s<<15)|(e<<7)|m);};
        uint16_t a0,a1,b0,b1;
        if(cat==0){a0=rb(120,134);a1=rb(120,134);b0=rb(120,134);b1=rb(120,134);acc[l]=f((rng()&0x80000000u)|((uint32_t)(120+rng()%16)<<23)|(rng()&0x7fffff));}
        else if(cat==1){ // cancellation: acc ~ -(a1*b1) ; ties
          a0=rb(110,130);a1=rb(120,134);b0=rb(110,130);b1=rb(120,134); float p=bf(a1)*bf(b1); acc[l]=-p*(1+ (float)(int)(rng()%5-2)*0x1p-23f) ;}
        else if(cat==2){ // tiny: results near denormal range
          a0=rb(60,70);a1=rb(60,70);b0=rb(58,66);b1=rb(58,66); acc[l]=f((rng()&0x80000000u)|((uint32_t)(rng()%3)<<23)|(rng()&0x7fffff));}
        else if(cat==3){ // denormal inputs
          a0=rng()&0x807f; a1=rb(1,10); b0=rb(120,140); b1=rng()&0x807f; acc[l]=f((rng()&0x80000000u)|(rng()&0x7fffff));}
        else if(cat==4){ // overflow
          a0=rb(190,254);a1=rb(190,254);b0=rb(190,254);b1=rb(190,254); acc[l]=f((rng()&0x80000000u)|((uint32_t)(250+rng()%4)<<23)|(rng()&0x7fffff));}
        else { // wide random
          a0=rng();a1=rng();b0=rng();b1=rng(); acc[l]=f(rng());}
        A[l]=a0|(uint32_t(a1)<<16); B[l]=b0|(uint32_t(b1)<<16);
      }
      hw(acc,A,B,out);
      for(int l=0;l<16;++l){ ++total;
        float r[5]={e_odd_first(acc[l],A[l],B[l],true,true),e_even_first(acc[l],A[l],B[l],true,true),e_odd_first(acc[l],A[l],B[l],false,false),e_single(acc[l],A[l],B[l]),e_prodsum(acc[l],A[l],B[l])};
        for(int k=0;k<5;++k){ bool same = u(r[k])==u(out[l]) || (std::isnan(r[k])&&std::isnan(out[l])); if(!same){ ++mism[k]; if(k==0 && ex_printed<4){ ++ex_printed; printf("  cat%d ex: acc=%a a=%08x b=%08x hw=%a(%08x) odd_first=%a even=%a single=%a\n",cat,acc[l],A[l],B[l],out[l],u(out[l]),r[0],r[1],r[3]);}}}
      }
    }
    printf("cat %d: %ld lanes;",cat,total); for(int k=0;k<5;++k) printf(" %s: %ld;",names[k],mism[k]); printf("\n");
  }
}
