# Composition: CAKD's feature alignment + GKD's grouped logit KD (paper
# settings of configs/gkd/gkd_r50_mbf.py) in one distiller. The teacher logits
# come from the teacher's own ArcFace head on its prompt-free embedding (the
# distiller reads teacher embeddings/logits without prompts), so the prompts
# only serve the CAKD term and cannot drift the teacher's predictions.
_base_ = './cakd_vit_t_mbf.py'
model = dict(
    distill_losses=dict(
        gkd=dict(type='GKDLoss', tau=0.93, lambda1=8.0, lambda2=1.0,
                 lambda3=0.0, temperature=1.0, k_mode='per_sample',
                 rank_by='student',
                 inputs=dict(student_logits='student.logits',
                             teacher_logits='teacher.logits',
                             gt_label='gt_label'))))
