"""What an answer is, apart from HTTP and from where the model runs: the :class:`Classifier` of a
model family (decode -> preprocess -> forward -> answer), the answers' shape and the calibration
maths. Used by the service, training's evaluations, the benchmarks and the load tests alike."""

from inference.classifier import Classifier, InlineDecoder

__all__ = ["Classifier", "InlineDecoder"]
