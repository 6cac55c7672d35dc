# Similarity-preserving KD (Tung & Mori, ICCV 2019) on the embeddings; the
# configs set its Gram-matrix options and weight (configs/sp/sp_r50_mbf.py).
sp_loss = dict(type='SPLoss',
               inputs=dict(student_feat='student.embedding',
                           teacher_feat='teacher.embedding'))
