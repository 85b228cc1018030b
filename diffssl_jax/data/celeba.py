"""CelebA's reference crop and its 40 attribute names, for `TfdsSource(crop=, attribute_keys=)`.

Crop: DiTi and PDAE (and Diff-AE's `d2c_crop`, from D2C) feed CelebA-64 as the 128x128
window at top 57, left 25 of the 218x178 aligned image, i.e. `img[57:185, 25:153]`, a square
centred on (row 121, column 89), then resize it to 64x64 (torchvision `Resize`, bilinear with
antialiasing). Sources: `CropCelebA64` = `F.crop(img, 57, 25, 128, 128)` in
`dataset/celeba64.py` of github.com/yue-zhongqi/diti and of github.com/ckczzj/PDAE;
docs/methods.md B.5. (It is not the 148x148 crop `img[40:188, 15:163]` of the VAE literature.)

Attributes: the 40 binary labels of `list_attr_celeba.txt`, in that file's column order,
which is also tfds' `celeb_a` (`ATTR_HEADINGS`, stored as `example['attributes']`, a dict of
40 bools) and the order of DiTi's `id_to_label`, whose probe reports the test mean AP over
them (docs/methods.md B.6).
"""

CROP = (57, 25, 128, 128)  # (top, left, height, width) in the 218x178 aligned image
ATTRIBUTES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes",
    "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks",
    "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)  # fmt: skip
IMAGE_SHAPE = (218, 178, 3)  # (H, W, C) of the aligned images (`img_align_celeba`)
