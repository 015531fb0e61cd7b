R=[1.6043977737426758,1.4337526559829712,1.4397307634353638]
from multiprocessing import Pool
x=img(768,1024,0)
def f(a):return len(preprocess(a))
with Pool(15)as P:
 P.map(f,[x]*32);t0=time.perf_counter();P.map(f,[x]*960,chunksize=4);print('pp/s no token IPC',960/(time.perf_counter()-t0))
torch.backends.cudnn.allow_tf32=False
with torch.inference_mode():
 m.cuda();m.stem_chunk=8192;g=m(pb(T,'cuda'))[:,0].cpu()
 print('no-tf32 fp32 max|gpu-ref|',max(abs(a-b)for a,b in zip(g.tolist(),R)))
 def run(tag,bs=128):
  b=pb([T[0]]*bs,'cuda')
  for d in(None,torch.bfloat16):
   with torch.autocast('cuda',dtype=d or torch.float32,enabled=d is not None):
    m(b);m(b);torch.cuda.synchronize();n=0;t0=time.perf_counter()
    while time.perf_counter()-t0<4:m(b);n+=bs
    torch.cuda.synchronize();print(tag,d,'img/s',n/(time.perf_counter()-t0),flush=True)
 run('eager no-tf32')
 m.stem=torch.compile(m.stem,dynamic=True)
 t0=time.perf_counter();m(pb(T,'cuda'));print('compile s',time.perf_counter()-t0)
 g=m(pb(T,'cuda'))[:,0].cpu();print('compiled fp32 max|gpu-ref|',max(abs(a-b)for a,b in zip(g.tolist(),R)))
 run('compiled stem')
