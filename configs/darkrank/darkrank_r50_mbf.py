# DarkRank (Chen et al., AAAI 2018) baseline: IR50 teacher -> MobileFaceNet
# student, GKD Table 5 setting. Hard (ListMLE) transfer of the teacher's 3
# nearest neighbours of every sample, scores -3 * d^3 on L2-normalized
# embeddings, within the batch gathered over all GPUs; weight 1 as in the
# face-recognition baselines of the EKD authors.
_base_ = '../_base_/distillers/r50_mbf_ms1mv2.py'
model = dict(
    distill_losses=dict(
        darkrank=dict(type='DarkRankLoss', alpha=3.0, beta=3.0,
                      list_length=3, normalize=True, gather=True,
                      loss_weight=1.0,
                      inputs=dict(student_embedding='student.embedding',
                                  teacher_embedding='teacher.embedding'))))
