"""Dog-breed classifier: SageMaker bring-your-own container for training and serving ResNet50."""
