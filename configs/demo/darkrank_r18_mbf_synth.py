# DarkRank on the synthetic set (CPU), same budget as the other demo methods:
# ListMLE of the teacher's 3 nearest neighbours (alpha 3, beta 3) among the
# normalized 128-d embeddings of the gathered batch. The usual weight 1 is
# kept: its gradient on the student backbone is ~1x the ArcFace gradient at
# the start of training (measured on one synthetic batch with the demo
# teacher).
_base_ = './_distill_r18_mbf_synth.py'
model = dict(
    distill_losses=dict(
        darkrank=dict(type='DarkRankLoss', alpha=3.0, beta=3.0,
                      list_length=3, loss_weight=1.0,
                      inputs=dict(student_embedding='student.embedding',
                                  teacher_embedding='teacher.embedding'))))
