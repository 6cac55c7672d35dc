# RKD on the synthetic set (CPU), same budget as the other demo methods:
# distance (25) + angle (50) smooth-L1 terms on the 128-d embeddings of the
# batch gathered over the processes. The usual weights are kept: at the start
# of training the RKD gradient on the student backbone is ~0.3x the ArcFace
# gradient (measured on one synthetic batch with the demo teacher).
_base_ = ['./_distill_r18_mbf_synth.py', '../_base_/losses/rkd.py']
model = dict(distill_losses=dict(rkd={{_base_.rkd_loss}}))
