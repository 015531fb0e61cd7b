R=[1.6043977737426758,1.4337526559829712,1.4397307634353638]
from multiprocessing import Pool
x=img(768,1024,0);t0=time.perf_counter()
for _ in range(10):preprocess(x)
print('pp ms',(time.perf_counter()-t0)*100)
with Pool(16)as P:
 P.map(preprocess,[x]*32);t0=time.perf_counter();P.map(preprocess,[x]*640,chunksize=4);print('pp/s',640/(time.perf_counter()-t0))
with torch.inference_mode():
 c=m(pb(T,'cpu'))[:,0]
 m.cuda();m.stem_chunk=8192;g=m(pb(T,'cuda'))[:,0].cpu()
 print('gpu fp32',g.tolist(),'max|gpu-ref|',max(abs(a-b)for a,b in zip(g.tolist(),R)),'max|gpu-devcpu|',(g-c).abs().max().item())
 g1=[m(pb([t],'cuda'))[0,0].item()for t in T];print('gpu single vs batched',max(abs(a-b)for a,b in zip(g1,g.tolist())))
 for d in(torch.bfloat16,torch.float16):
  with torch.autocast('cuda',dtype=d):h=m(pb(T,'cuda'))[:,0].float().cpu()
  print(d,'max|x-ref|',max(abs(a-b)for a,b in zip(h.tolist(),R)))
 for d in(None,torch.bfloat16):
  for bs in(64,256):
   b=pb([T[0]]*bs,'cuda')
   with torch.autocast('cuda',dtype=d or torch.float32,enabled=d is not None):
    m(b);torch.cuda.synchronize();n=0;t0=time.perf_counter()
    while time.perf_counter()-t0<4:m(b);n+=bs
    torch.cuda.synchronize();print('model',d,bs,'img/s',n/(time.perf_counter()-t0),flush=True)
 b=pb([T[0]]*128,'cuda')
 with torch.autocast('cuda',dtype=torch.bfloat16),torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA])as p:
  m(b);torch.cuda.synchronize()
 print(p.key_averages().table(sort_by='cuda_time_total',row_limit=14))
