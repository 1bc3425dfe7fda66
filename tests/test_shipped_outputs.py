"""The shipped two-talker weights load and give the outputs they gave before the model's token kinds moved into
ssl_model/tokens/: the reference numbers were recorded from the code before that move, on the same input."""
import torch

from ssl_model.loading import load_localizer, model_weights

# logits[:, :, ::6] of the two-talker model on INPUT, recorded before the move (every 6th class of 36)
REFERENCE = [[[5.340146541595459, -3.8478591442108154, 1.041657567024231, 0.07332112640142441, -0.5390029549598694,
               -2.676629066467285],
              [-3.073319911956787, -2.341519594192505, -0.7939943075180054, -3.0956673622131348, 6.092464923858643,
               -3.445148468017578]],
             [[6.825801372528076, 0.12503421306610107, 2.2782044410705566, -3.355701208114624, -2.7478857040405273,
               -1.781748652458191],
              [-1.012602686882019, -2.436387062072754, -1.0128540992736816, -3.5544466972351074, 6.675503730773926,
               -3.379509687423706]]]


def test_the_shipped_two_talker_weights_give_the_recorded_outputs():
    wave = 0.1 * torch.randn(2, 2, 16000, generator=torch.Generator().manual_seed(0))  # INPUT: [B, 2, T]
    model, _ = load_localizer(model_weights("two-talker"))
    with torch.no_grad():
        logits = model.eval()(wave)
    assert logits.shape == (2, 2, 36)
    torch.testing.assert_close(logits[:, :, ::6], torch.tensor(REFERENCE), rtol=1e-5, atol=1e-4)
    assert logits.argmax(-1).tolist() == [[2, 25], [1, 24]]
