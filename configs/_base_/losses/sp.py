# Similarity-preserving KD (Tung & Mori, ICCV 2019) on the embeddings.
# * `sp_loss` (default, configs/sp/sp_r50_mbf.py): the face-recognition form
#   of the EKD authors' baseline — cosine-similarity matrix of the
#   L2-normalized embeddings, ||G_s - G_t||_F^2 / B^2, gamma = 1.
# * `sp_gram_loss` (configs/sp/sp_gram_r50_mbf.py, the CPU demo): the
#   paper's CIFAR form — row-L2-normalized Gram matrix A A^T of the raw
#   features, gamma = 3000.
# Which form GKD Table 5 used is not public (see SPLoss).
sp_loss = dict(type='SPLoss', normalize_features=True, normalize_rows=False,
               loss_weight=1.0,
               inputs=dict(student_feat='student.embedding',
                           teacher_feat='teacher.embedding'))
sp_gram_loss = dict(sp_loss, normalize_features=False, normalize_rows=True,
                    loss_weight=3000.0)
