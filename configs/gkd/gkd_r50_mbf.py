# GKD (AAAI 2023): IR50 teacher -> MobileFaceNet student on MS1MV2.
#   tools/dist_train.sh configs/gkd/gkd_r50_mbf.py 8
# Needs the teacher at checkpoints/arcface_r50_ms1mv2.pth (train it with
# configs/arcface/arcface_r50_ms1mv2.py or see the README for insightface's).
_base_ = '../_base_/distillers/r50_mbf_ms1mv2.py'
model = dict(
    distill_losses=dict(
        gkd=dict(
            type='GKDLoss', tau=0.93, lambda1=8.0, lambda2=1.0, lambda3=0.0,
            temperature=1.0, k_mode='per_sample', rank_by='student',
            # logits: s*cos (use '*.margin_logits' for the authors' variant)
            inputs=dict(student_logits='student.logits',
                        teacher_logits='teacher.logits',
                        gt_label='gt_label'))))
