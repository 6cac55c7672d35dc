# DarkRank on the synthetic set (CPU), same budget as the other demo methods:
# ListMLE of the teacher's 3 nearest neighbours (alpha 3, beta 3) among the
# normalized 128-d embeddings of the gathered batch. The usual weight 1 is
# kept: its gradient on the student backbone is ~1x the ArcFace gradient at
# the start of training (measured on one synthetic batch with the demo
# teacher).
_base_ = ['./_distill_r18_mbf_synth.py', '../_base_/losses/darkrank.py']
model = dict(distill_losses=dict(darkrank={{_base_.darkrank_loss}}))
