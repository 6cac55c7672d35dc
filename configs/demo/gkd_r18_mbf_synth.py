# GKD on the synthetic set (CPU): tools/dist_train.sh configs/demo/gkd_r18_mbf_synth.py 2
_base_ = './_distill_r18_mbf_synth.py'
model = dict(
    distill_losses=dict(
        gkd=dict(type='GKDLoss', tau=0.93, lambda1=8.0, lambda2=1.0,
                 inputs=dict(student_logits='student.logits',
                             teacher_logits='teacher.logits',
                             gt_label='gt_label'))))
