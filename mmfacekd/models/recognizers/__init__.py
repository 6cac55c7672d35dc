from .face_recognizer import FaceRecognizer, cls_loss_mask

__all__ = ['FaceRecognizer', 'cls_loss_mask']
