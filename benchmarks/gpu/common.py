import sys,types,time,zlib,numpy as np,torch
for n in('simplejpeg','platformdirs'):sys.modules.setdefault(n,types.ModuleType(n))
sys.path.insert(0,'src')
from musiq.model import Musiq,PackedBatch
from musiq.checkpoint import Variant,parameter_shapes
from musiq.preprocess import preprocess
def rv(k,s):
 n=np.random.default_rng([20240601,zlib.crc32(k.encode())]).standard_normal(s);p=k.split('/');l=p[-1];q=p[-2]if len(p)>1 else''
 if l in('pos_embedding','scale_embedding','cls'):v=.5*n
 elif l=='kernel'and q in('conv_root','conv1','conv2','conv3','conv_proj'):v=.05*n
 elif l=='kernel':v=n/np.sqrt(s[0]*s[1]if q=='out'else s[0])
 elif l=='scale':v=1+.1*n
 elif l=='bias'and(q.startswith(('gn','LayerNorm'))or q=='encoder_norm'):v=.1*n
 else:v=.05*n
 return v.astype(np.float32)
m=Musiq(Variant(1,3)).load_official({k:rv(k,s)for k,s in parameter_shapes(1,3).items()}).eval()
def img(h,w,s):
 r=np.random.default_rng(s);a=r.integers(0,256,(h//8+1,w//8+1,3)).astype(np.float32)
 return np.clip(np.repeat(np.repeat(a,8,0),8,1)[:h,:w]+r.integers(-20,21,(h,w,3)),0,255).astype(np.uint8)
T=[preprocess(img(h,w,i))for i,(h,w)in enumerate([(768,1024),(333,517),(600,450)])]
def pb(ts,d):
 c=lambda a:torch.from_numpy(np.concatenate(a)).to(d)
 return PackedBatch(c([t.patches for t in ts]),c([t.positions for t in ts]),c([t.scale_ids for t in ts]),[len(t)for t in ts])
