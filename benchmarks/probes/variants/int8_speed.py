"""fp32 against int8 of a bundle, alternated run by run at 320 and 448: usage int8_speed.py BUNDLE."""
import time, glob, numpy as np, cv2, onnxruntime as ort, sys
from pathlib import Path
from muselens.export.precision import quantize_int8
B = Path(sys.argv[1])
fp32 = B/"models/fp32.onnx"
dst = B/"models/int8.onnx"
def rs(img, s):
    h, w = img.shape[:2]; k = s/min(h, w)
    return cv2.resize(img, (round(w*k), round(h*k)), interpolation=cv2.INTER_AREA)
refs = sorted(glob.glob(str(B/"references/*.jpg")))[:32]
imgs = [rs(cv2.cvtColor(cv2.imread(r), cv2.COLOR_BGR2RGB), 320) for r in refs]
if not dst.exists():
    t = time.time(); quantize_int8(fp32, dst, imgs); print("quantized in", time.time()-t)
sess = {n: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for n, p in [("fp32", fp32), ("int8", dst)]}
out = ["descriptor"]
for s in (320, 448):
    x = np.random.default_rng(0).integers(0, 255, (1, s, round(s*16/9), 3), dtype=np.uint8)
    for n, se in sess.items():
        for _ in range(3): se.run(out, {"image": x})
    res = {n: [] for n in sess}
    for rep in range(40):
        for n, se in sess.items():
            t = time.perf_counter(); se.run(out, {"image": x}); res[n].append((time.perf_counter()-t)*1e3)
    print(s, {n: round(float(np.median(v)), 1) for n, v in res.items()})
