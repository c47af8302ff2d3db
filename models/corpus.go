package models

// corpus is the text the default model's BPE merges are learned on: the
// kind of text nextact serves (shopping pages as simplified HTML with
// hierarchical element names, action JSON, first-person rationales).
// Changing it changes every generated model; bump generatorVersion.
const corpus = `<html>
<head><title>Amazon.com: columbia shirt</title></head>
<body>
<div name="nav">
  <input type="text" name="search_input" value="columbia shirt" placeholder="Search Amazon"/>
  <button name="search_button">Go</button>
  <a name="nav.cart">Cart 0 items</a>
  <a name="nav.orders">Returns and Orders</a>
</div>
<div name="refinements">
  <span>Customer Reviews</span>
  <a name="refinements.customer_reviews.4_stars_up">4 Stars and Up</a>
  <a name="refinements.customer_reviews.3_stars_up">3 Stars and Up</a>
  <span>Price</span>
  <a name="refinements.price.under_25">Under $25</a>
  <a name="refinements.price.25_to_50">$25 to $50</a>
  <a name="refinements.price.50_to_100">$50 to $100</a>
  <span>Brand</span>
  <input type="checkbox" name="refinements.brand.columbia"/> Columbia
  <input type="checkbox" name="refinements.brand.the_north_face"/> The North Face
  <input type="checkbox" name="refinements.brand.patagonia"/> Patagonia
  <span>Size</span>
  <button name="refinements.size.small">S</button>
  <button name="refinements.size.medium">M</button>
  <button name="refinements.size.large">L</button>
</div>
<div name="search_results">
  <div name="columbia_shirt">
    <a name="columbia_shirt.view_product">Columbia Men's Silver Ridge Utility Long Sleeve Shirt</a>
    <span>4.6 out of 5 stars, 12,345 ratings</span>
    <span>$34.99</span>
    <span>FREE delivery Tue, Jun 4 on orders over $35 shipped by Amazon</span>
    <button name="columbia_shirt.add_to_cart">Add to cart</button>
  </div>
  <div name="north_face_shirt">
    <a name="north_face_shirt.view_product">The North Face Men's Short Sleeve Wander Shirt</a>
    <span>4.4 out of 5 stars, 2,108 ratings</span>
    <span>$29.95</span>
    <button name="north_face_shirt.add_to_cart">Add to cart</button>
  </div>
  <div name="patagonia_shirt">
    <a name="patagonia_shirt.view_product">Patagonia Men's Capilene Cool Daily Shirt</a>
    <span>4.7 out of 5 stars, 987 ratings</span>
    <span>$45.00</span>
    <button name="patagonia_shirt.add_to_cart">Add to cart</button>
  </div>
</div>
<div name="pagination">
  <a name="pagination.previous">Previous</a>
  <a name="pagination.page_2">2</a>
  <a name="pagination.next">Next</a>
</div>
</body>
</html>
<html>
<head><title>Columbia Men's Silver Ridge Utility Long Sleeve Shirt</title></head>
<body>
<div name="product">
  <h1>Columbia Men's Silver Ridge Utility Long Sleeve Shirt</h1>
  <span>Visit the Columbia Store</span>
  <span>4.6 out of 5 stars</span>
  <span>Price: $34.99</span>
  <span>Color: Cool Grey</span>
  <button name="product.color.cool_grey">Cool Grey</button>
  <button name="product.color.vivid_blue">Vivid Blue</button>
  <button name="product.color.white">White</button>
  <select name="product.size_select">
    <option>Small</option><option>Medium</option><option>Large</option><option>X-Large</option>
  </select>
  <span>In Stock</span>
  <input type="number" name="product.quantity" value="1"/>
  <button name="product.add_to_cart">Add to Cart</button>
  <button name="product.buy_now">Buy Now</button>
  <ul name="product.about">
    <li>Omni-Shade UPF 50 sun protection and Omni-Wick moisture management keep you cool and dry.</li>
    <li>Vented back and roll-up sleeves with tabs for hot days on the trail.</li>
    <li>Machine wash cold, tumble dry low.</li>
  </ul>
</div>
<div name="reviews">
  <span>Top reviews from the United States</span>
  <p>Great shirt for hiking. Fits true to size and dries fast.</p>
  <p>The fabric is thin but sturdy. I bought two more colors.</p>
  <a name="reviews.see_all">See all reviews</a>
</div>
<div name="cart">
  <span>Subtotal (1 item): $34.99</span>
  <button name="cart.proceed_to_checkout">Proceed to checkout</button>
  <button name="cart.delete">Delete</button>
  <button name="cart.save_for_later">Save for later</button>
</div>
</body>
</html>
{"type":"type_and_submit","name":"search_input","text":"columbia shirt"}
{"type":"click","name":"refinements.customer_reviews.4_stars_up"}
{"type":"click","name":"refinements.price.25_to_50"}
{"type":"click","name":"columbia_shirt.view_product"}
{"type":"click","name":"product.color.vivid_blue"}
{"type":"click","name":"product.add_to_cart"}
{"type":"click","name":"columbia_shirt.add_to_cart"}
{"type":"click","name":"cart.proceed_to_checkout"}
{"type":"click","name":"product.buy_now"}
{"type":"type_and_submit","name":"search_input","text":"hiking shirt men long sleeve"}
{"type":"click","name":"pagination.next"}
{"type":"click","name":"reviews.see_all"}
{"type":"terminate"}
{"action":{"type":"click","name":"product.buy_now"},"rationale":"The price is fair and the reviews are good, so I will buy it now."}
{"action":{"type":"terminate"},"rationale":"Nothing here fits my budget, so I am done shopping for today."}
I want a light shirt for hiking this summer, so I will search for a columbia shirt.
The results look good, but I only want shirts with at least four stars, so I will filter by customer reviews.
This Columbia shirt has great reviews and the price is under fifty dollars, so I will open the product page.
I like the blue color better than the grey one, so I will select it before adding the shirt to my cart.
The shirt is in stock and the delivery is free, so I will add it to the cart.
I have everything I need in my cart, so I will proceed to checkout.
I want to compare this shirt with the North Face one before I decide, so I will go back to the search results.
The reviews say the fabric is thin, which is fine for hot days, so I will buy it now.
None of these shirts are in my size, so I will look at the next page of results.
I am not sure about the fit, so I will read all the reviews first.
I found what I was looking for at a good price, and I do not need anything else today.
This is too expensive for me; I will search for something cheaper instead.
`
