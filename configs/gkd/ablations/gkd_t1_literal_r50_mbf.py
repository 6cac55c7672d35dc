# GKD read literally: eq. 1-3 without a temperature (T = 1) on s*cos logits,
# s = 64. Kept as an ablation because it barely distills: once the student
# fits its training set its softmax puts ~1 on one class, eq. 3 gives k = 1,
# Primary-KD is a KL over one class (exactly 0) and lambda1 = 8 does nothing;
# only a small target-vs-rest Binary-KD is left. GKDLoss warns when the mean
# k stays <= 2 for 100 iterations. Measured k: see docs/results.md.
# (On margin logits, the headline's inputs, T = 1 does not collapse but puts
# the teacher's target outside its own primary group: p_phi_t 0.23.)
_base_ = '../gkd_r50_mbf.py'
model = dict(distill_losses=dict(gkd=dict(
    temperature=1.0,
    inputs=dict(student_logits='student.logits',
                teacher_logits='teacher.logits', gt_label='gt_label'))))
