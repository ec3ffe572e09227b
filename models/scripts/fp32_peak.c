/* The machine's fp32 peak, measured: independent fused multiply-adds in registers (12 chains per
 * thread, AVX2 and AVX-512), on 1 and 2 threads. BENCHMARKS.md states GEMM throughput as a share of
 * this figure.
 *
 *     gcc -O3 -march=native -pthread models/scripts/fp32_peak.c -o /tmp/fp32_peak && /tmp/fp32_peak
 */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>
#include <pthread.h>
#define N 200000000L
static double run512(void){
  __m512 a[12]; __m512 b=_mm512_set1_ps(0.9999f), c=_mm512_set1_ps(1e-6f);
  for(int i=0;i<12;i++) a[i]=_mm512_set1_ps(i);
  for(long it=0; it<N/12; it++){ for(int i=0;i<12;i++) a[i]=_mm512_fmadd_ps(a[i],b,c);}
  float s=0; for(int i=0;i<12;i++) s+=_mm512_reduce_add_ps(a[i]); return s;}
static double run256(void){
  __m256 a[12]; __m256 b=_mm256_set1_ps(0.9999f), c=_mm256_set1_ps(1e-6f);
  for(int i=0;i<12;i++) a[i]=_mm256_set1_ps(i);
  for(long it=0; it<N/12; it++){ for(int i=0;i<12;i++) a[i]=_mm256_fmadd_ps(a[i],b,c);}
  float s=0; float t[8]; for(int i=0;i<12;i++){_mm256_storeu_ps(t,a[i]); for(int j=0;j<8;j++) s+=t[j];} return s;}
static void* th512(void*p){ *(double*)p=run512(); return 0;}
static void* th256(void*p){ *(double*)p=run256(); return 0;}
static double now(){struct timespec t; clock_gettime(CLOCK_MONOTONIC,&t); return t.tv_sec+t.tv_nsec*1e-9;}
int main(){
  for(int w=0; w<2; w++) for(int nt=1; nt<=2; nt++){
    pthread_t t[2]; double r[2]; double t0=now();
    for(int i=0;i<nt;i++) pthread_create(&t[i],0,w?th512:th256,&r[i]);
    for(int i=0;i<nt;i++) pthread_join(t[i],0);
    double dt=now()-t0; int lanes=w?16:8;
    printf("%s threads %d: %.1f GFLOP/s (%g)\n", w?"avx512":"avx2", nt, 2.0*lanes*(N/12*12)*nt/dt/1e9, r[0]);
  }
}
